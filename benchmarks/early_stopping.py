"""Early stopping's benchmark: the same spec, the same seeds, with and without early stopping.

    python benchmarks/early_stopping.py                     # sweeps/bench-early-stopping.yaml, ~1 h on 2 cores
    python benchmarks/early_stopping.py --spec SPEC --out DIR

Runs `run_sweep.py run` twice on one spec: as written (search.early_stopping on) and with
early_stopping removed (every candidate pays the full price). Then prints, for each run, the
candidates' compute in core-seconds from the trials' own timings (distillation wall seconds ×
distill.num_workers, plus the proxy's and GLUE's fine-tuning seconds, which are Ray tasks of one
core each), the best macro_score, and `compute saved = 1 - with / without`. The distillation wall
seconds of a trial include its wait for free CPUs (the first trial of each run waits for the
teacher's reference GLUE runs); where the Train runs report their own busy time (run_seconds) the
ratio is printed on that too. Whether the best of the
early-stopped search is as good as the full search's is decided on the paired bootstrap of the
two winners' saved predictions (the same validation examples; distil.evaluation.confidence): the difference
of their macro scores with its 95 % interval, "within noise" when the interval contains 0.
Reference rows (the teacher's GLUE runs) are not counted: they cost the same in both runs.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from distil.evaluation import confidence, scores  # noqa: E402
from distil.report import leaderboard  # noqa: E402


def run(spec: dict, out: Path, cache: str) -> float:
    """Run one sweep of `spec` into `out`; returns its wall seconds."""
    spec_file = out.with_suffix(".yaml")
    spec_file.write_text(yaml.safe_dump(spec))
    t0 = time.time()
    subprocess.run([sys.executable, str(ROOT / "run_sweep.py"), "run", str(spec_file), "--output", str(out),
                    "--cache-dir", cache], cwd=ROOT, check=True)
    return time.time() - t0


def compute(out: Path, workers: int) -> dict:
    """Core-seconds of the candidates of one results dir, by part, and their outcomes."""
    distil = busy = proxy = glue = 0.0
    outcomes, all_busy = {}, True
    for cand in sorted((out / "candidates").iterdir()):
        rungs = json.loads((cand / "progress.json").read_text())["rungs"] if (cand / "progress.json").exists() else []
        distil += workers * sum(r["distill_seconds"] for r in rungs)
        # run_seconds: the worker group's own time (the trial's wall time also holds waiting for CPUs)
        all_busy &= all("run_seconds" in r["distill"] for r in rungs)
        busy += workers * sum(r["distill"].get("run_seconds", r["distill_seconds"]) for r in rungs)
        proxy += sum(r.get("proxy_seconds", 0.0) for r in rungs)
        if (cand / "result.json").exists():
            glue += json.loads((cand / "result.json").read_text())["finetune_seconds"]
            outcomes[cand.name] = "done"
        else:
            outcomes[cand.name] = f"stopped after rung {len(rungs) - 1}"
    # The proxy at step 0 of each init (references/init_only-<rule>/proxy-*.json) is early stopping's too.
    proxy += sum(json.loads(p.read_text())["proxy_seconds"] for p in out.glob("references/init_only-*/proxy-*.json"))
    return {"distill": distil, "proxy": proxy, "glue": glue, "total": distil + proxy + glue, "outcomes": outcomes,
            "busy_total": busy + proxy + glue if all_busy else None}


def best(out: Path) -> tuple[str, float]:
    df = leaderboard.load(out, resamples=0).frame
    students = df[(df["kind"] == "student") & (df["status"] == "done")]
    row = students.loc[students["macro_score"].idxmax()]
    return str(row["model"]), float(row["macro_score"])


def winners_difference(es: Path, full: Path, include_wnli: bool) -> tuple[float, float, float]:
    """Macro of the early-stopped search's best minus the full search's best, with the 95 %
    paired bootstrap interval over the shared validation examples."""
    a, b = best(es)[0], best(full)[0]
    splits, excluded = confidence.load_splits({"es": es / "candidates" / a, "full": full / "candidates" / b})
    if excluded:
        raise RuntimeError(f"cannot pair the winners' predictions: {excluded}")
    cols = confidence.resampled_columns(splits)
    macro = {m: scores.macro_score(c, include_wnli) for m, c in cols.items()}
    full_sample = {m: scores.macro_score(c, include_wnli) for m, c in confidence.resampled_columns(splits, 0).items()}
    lo, hi = confidence.paired_interval(macro["es"], macro["full"])
    return float(np.asarray(full_sample["es"] - full_sample["full"]).item()), lo, hi  # (1,): the full sample


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--spec", default=str(ROOT / "sweeps" / "bench-early-stopping.yaml"))
    p.add_argument("--out", default=str(ROOT / "results" / "bench-early-stopping"))
    p.add_argument("--cache-dir", default="~/.cache/distil-sweep")
    p.add_argument("--report-only", action="store_true", help="only read two finished runs under --out")
    args = p.parse_args()
    spec = yaml.safe_load(Path(args.spec).read_text())
    if "early_stopping" not in spec["search"]:
        sys.exit("error: --spec: the spec needs search.early_stopping (the benchmark removes it for the full run)")
    base = Path(args.out)
    runs = {"with early stopping": base / "with", "without (full search)": base / "without"}
    walls = {}
    if not args.report_only:
        base.mkdir(parents=True, exist_ok=False)
        full = {**spec, "search": {k: v for k, v in spec["search"].items() if k != "early_stopping"}}
        for (name, out), s in zip(runs.items(), (spec, full)):
            walls[name] = run({**s, "name": out.name}, out, args.cache_dir)
    workers = spec.get("distill", {}).get("num_workers", 2)
    costs = {name: compute(out, workers) for name, out in runs.items()}
    print(f"\nspec {args.spec}: {spec['search']['num_candidates']} candidates, "
          f"search seed {spec['search'].get('seed', 0)}")
    print(f"{'run':24} {'distill':>9} {'proxy':>8} {'GLUE':>9} {'total':>9} {'best macro':>11}  wall   outcomes")
    for name, out in runs.items():
        c = costs[name]
        model, macro = best(out)
        stopped = sum(v != "done" for v in c["outcomes"].values())
        print(f"{name:24} {c['distill']:9.0f} {c['proxy']:8.0f} {c['glue']:9.0f} {c['total']:9.0f} {macro:11.2f}  "
              f"{walls.get(name, float('nan')):5.0f}s  {stopped} of {len(c['outcomes'])} stopped early (best {model})")
    w, wo = costs["with early stopping"]["total"], costs["without (full search)"]["total"]
    print(f"compute saved = 1 - with/without = 1 - {w:.0f}/{wo:.0f} = {100 * (1 - w / wo):.1f} %  (target >= 40 %)")
    bw, bwo = costs["with early stopping"]["busy_total"], costs["without (full search)"]["busy_total"]
    if bw and bwo:  # distillation counted from the worker groups' own time, without waiting for CPUs
        print(f"  with distillation as the worker groups' busy time: 1 - {bw:.0f}/{bwo:.0f} = "
              f"{100 * (1 - bw / bwo):.1f} %")
    include_wnli = spec.get("glue", {}).get("include_wnli", True)
    d, lo, hi = winners_difference(runs["with early stopping"], runs["without (full search)"], include_wnli)
    verdict = "within noise" if lo <= 0 <= hi else ("better" if lo > 0 else "worse")
    print(f"best with - best without = {d:+.2f} macro points, 95 % paired bootstrap [{lo:+.2f}, {hi:+.2f}]: {verdict}")


if __name__ == "__main__":
    main()
