#!/usr/bin/env python
"""distil-sweep: search DistilBERT distillation settings with Ray Tune + Optuna, rank students on GLUE.

    python run_sweep.py                                   # sweeps/smoke.yaml -> results/smoke/
    python run_sweep.py sweeps/cpu.yaml                   # a meaningful local run (~1 h)
    python run_sweep.py sweeps/distilbert-base.yaml --dry-run   # validate a spec, run nothing
    python run_sweep.py report results/smoke              # rebuild the leaderboard from stored results
    ray job submit --address http://127.0.0.1:8265 --working-dir . -- python run_sweep.py SPEC --output ABS_DIR
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

from distil import leaderboard  # noqa: E402
from distil.spec import SpecError, SweepSpec, load_spec  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    """Run a sweep (or `report`); returns the exit code: 0 ok, 1 nothing to report, 2 bad input."""
    args = parse_args(argv)
    if args.spec == "report":
        return report(args.output or (args.rest[0] if args.rest else None))
    t0 = time.time()
    # 1. Spec: validated once, before any cluster work; results/ is never overwritten.
    try:
        spec = load_spec(args.spec)
        n_layers = check_against_teacher(spec, offline=args.dry_run)
        out = claim_output_dir(Path(args.output or f"results/{spec.name}"), dry_run=args.dry_run)
    except SpecError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.dry_run:
        print(f"spec OK: {spec.name}: {spec.search.num_candidates} candidates, student {n_layers or '?'} layers, "
              f"searching {sorted(spec.search.searched())}; teacher {spec.teacher.model}; GLUE {spec.glue.data}")
        return 0
    import ray
    from transformers import AutoTokenizer

    from distil.data import prepare_corpus
    from distil.sweep import finish_references, run_search, submit_references
    from distil.teacher import prepare_teacher, resolve_teacher

    (out / "spec.json").write_text(spec.model_dump_json(indent=2))
    ray.init(address=args.address or os.environ.get("RAY_ADDRESS", "local"))
    # 2. Teacher and corpus (both cached): tokenise the corpus, fit the MLM head if it is missing.
    source = resolve_teacher(spec.teacher.model)
    cache = Path(args.cache_dir).expanduser().resolve()
    corpus_dir = prepare_corpus(spec.corpus, AutoTokenizer.from_pretrained(source), cache, spec.teacher.head_fit.eval_sequences)
    teacher_dir, head_fit = prepare_teacher(source, corpus_dir, spec.teacher.head_fit, cache, spec.seed)
    print(f"teacher: {teacher_dir} {json.dumps(head_fit)}", flush=True)
    # 3. Reference rows (teacher, random_init student, task-specific distillation) run as Ray
    #    tasks alongside the search.
    references = submit_references(spec, source, teacher_dir, head_fit, n_layers, out)
    # 4-6. Search: each trial distils a student (Ray Train) and fine-tunes it on GLUE (Ray tasks).
    ctx = {"out": str(out), "storage": str(out / "train"), "teacher_dir": teacher_dir, "corpus_dir": str(corpus_dir),
           "n_layers": n_layers, "seed": spec.seed, "distill": spec.distill.model_dump(), "glue": spec.glue.model_dump(),
           "fixed": spec.search.fixed()}
    run_search(spec, ctx)
    finish_references(references)
    # 7. Leaderboard.
    status = report(str(out))
    print(f"wall time: {time.time() - t0:.0f} s", flush=True)
    return status


def check_against_teacher(spec: SweepSpec, offline: bool) -> int | None:
    """Student depth (teacher layers // 2 unless set); checks explicit layer lists against the teacher.

    With `offline` (--dry-run) a hub-id teacher is not fetched: its depth is checked when the run starts.
    """
    from distil.spec import Choice, parse_layer_key
    from distil.student import select_layers
    from distil.teacher import resolve_teacher, teacher_depth

    try:
        source = resolve_teacher(spec.teacher.model)
        if offline and not os.path.isdir(source):
            return spec.student.n_layers
        depth = teacher_depth(source)
    except (ValueError, OSError) as e:
        raise SpecError(f"teacher.model: {str(e).splitlines()[0]}") from None
    n = spec.student.n_layers or depth // 2
    sels = spec.search.layer_selection
    checks = [("search.layer_selection", s) for s in (sels.choices if isinstance(sels, Choice) else [sels])]
    checks += [("task_distill.layer_selection", spec.task_distill.layer_selection)] if spec.task_distill else []
    for field, s in checks:
        try:
            select_layers(parse_layer_key(s) if isinstance(s, str) else s, depth, n)
        except ValueError as e:
            raise SpecError(f"{field}: {e}") from None
    return n


def claim_output_dir(out: Path, dry_run: bool) -> Path:
    """The absolute results dir, created unless dry_run. Raises SpecError if it already holds files."""
    out = out.resolve()
    if out.exists() and any(out.iterdir()):
        raise SpecError(f"--output: {out} already holds results; pass --output NEW_DIR (nothing was changed)")
    if not dry_run:
        out.mkdir(parents=True, exist_ok=True)
    return out


def report(results_dir: str | None) -> int:
    """Rebuild leaderboard files, report.html and best_student/ from stored results; exit code."""
    if not results_dir or not Path(results_dir).is_dir():
        print(f"error: report: {results_dir!r} is not a results dir; pass results/<sweep>", file=sys.stderr)
        return 2
    df = leaderboard.load(results_dir)
    if df.empty:
        print(f"error: report: no teacher or candidate results under {results_dir}", file=sys.stderr)
        return 1
    leaderboard.write(df, results_dir)
    print(leaderboard.to_markdown(df))
    print(f"leaderboard: {Path(results_dir) / 'leaderboard.csv'}, leaderboard.parquet and leaderboard.md", flush=True)
    from distil import export, report as html_report  # matplotlib only when a report is made

    print(f"report: {html_report.write_html(df, results_dir)} (plots in {Path(results_dir) / 'plots'})", flush=True)
    if export.best_student(df) is None:
        print("best student: none finished, nothing exported", flush=True)
    else:
        print(f"best student: {export.export_best(df, results_dir)}", flush=True)
    return 0


def parse_args(argv):
    """Command line: `[SPEC] [--output DIR] [--dry-run] [--address A] [--cache-dir D]` or `report DIR`."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("spec", nargs="?", default="sweeps/smoke.yaml", help="sweep YAML, or `report`")
    p.add_argument("rest", nargs="*", help="for `report`: the results dir")
    p.add_argument("--output", help="results dir (default results/<spec name>); must be new or empty")
    p.add_argument("--dry-run", action="store_true", help="validate the spec and stop")
    p.add_argument("--address", help="Ray cluster address (default: $RAY_ADDRESS, else a local cluster)")
    p.add_argument("--cache-dir", default="~/.cache/distil-sweep", help="tokenised corpus and fitted teachers")
    return p.parse_args(argv)


if __name__ == "__main__":
    sys.exit(main())
