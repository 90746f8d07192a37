"""Time of the paired bootstrap (distil.evaluation.confidence) on a realistic sweep: 16 rows (teacher, 3
reference rows, 12 candidates) x 9 GLUE tasks, 3 seeds on the small tasks, against a plain loop
that calls distil.evaluation.metrics.compute (scikit-learn/scipy) per resample, model and seed.

    python benchmarks/bootstrap.py                 # cpu.yaml-size splits (<= 1,000 examples)
    python benchmarks/bootstrap.py --full          # the full offline validation splits (qqp 7,600, mnli 7,469, ...)

Prints seconds for `leaderboard.load` with 1,000 resamples (reading the parquet files included),
the loop's seconds extrapolated from a few resamples, and their ratio.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from distil.evaluation import confidence
from distil.report import leaderboard  # noqa: E402
from distil.evaluation.metrics import compute  # noqa: E402
from tests.handmade import DEFAULT_PARAMS, SPEC, labels_for, noisy, write_json, write_row  # noqa: E402

FULL = {"cola": 1043, "sst2": 872, "mrpc": 408, "stsb": 1500, "qqp": 7600, "mnli_m": 7469, "qnli": 5463, "rte": 277,
        "wnli": 71}
SMALL = {"cola", "mrpc", "stsb", "rte", "wnli"}


def build(out: Path, sizes: dict[str, int]) -> None:
    data = {c: labels_for(c, n) for c, n in sizes.items()}
    write_json(out / "spec.json", SPEC)
    rows = ["teacher", "random_init", "mlm_only", "init_only"] + [f"c{i:02d}" for i in range(12)]
    for i, name in enumerate(rows):
        preds = {c: {s: noisy(y, 0.1 + 0.02 * i, seed=100 * i + s) for s in ([0, 1, 2] if c in SMALL else [0])}
                 for c, (idx, y) in data.items()}
        params = DEFAULT_PARAMS if name == "c00" else {**DEFAULT_PARAMS, "alpha_ce": 0.1 * i}
        where = out / "teacher" if name == "teacher" else out / ("references" if i < 4 else "candidates") / name
        write_row(where, "teacher" if i == 0 else "reference" if i < 4 else "student", preds, data, params)


def naive_seconds(splits: dict[str, confidence.Split], resamples: int) -> float:
    """Seconds of a loop over `resamples` resamples calling distil.evaluation.metrics.compute per model and seed."""
    t0 = time.perf_counter()
    rng = np.random.default_rng(0)
    for split in splits.values():
        for _ in range(resamples):
            take = rng.integers(0, len(split.labels), len(split.labels))
            for preds in split.preds.values():
                for p in preds:
                    for m in split.task.metrics:
                        compute(m, split.labels[take], p[take])
    return time.perf_counter() - t0


def timed_load(results: str, resamples: int):
    """(leaderboard Board, seconds to read it without the bootstrap, seconds with `resamples`)."""
    t0 = time.perf_counter()
    leaderboard.load(results, resamples=0)
    t_read = time.perf_counter() - t0
    t0 = time.perf_counter()
    board = leaderboard.load(results, resamples=resamples)
    return board, t_read, time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--full", action="store_true", help="full offline validation splits instead of <= 1,000 examples")
    p.add_argument("--resamples", type=int, default=1000)
    args = p.parse_args()
    sizes = FULL if args.full else {c: min(n, 1000) for c, n in FULL.items()}
    with tempfile.TemporaryDirectory() as tmp:
        build(Path(tmp), sizes)
        board, t_read, t_boot = timed_load(tmp, args.resamples)
        assert board.frame["delta_vs_default_lo"].notna().sum() == 16, board.bootstrap["excluded"]
        splits, _ = confidence.load_splits({m: Path(tmp) / d for m, d in _dirs(Path(tmp)).items()})
        few = 5
        t_naive = naive_seconds(splits, few) * args.resamples / few
    n_preds = sum(len(p) for s in splits.values() for p in s.preds.values())
    print(f"16 rows x {len(sizes)} tasks ({sum(sizes.values())} examples, {n_preds} prediction sets), "
          f"{args.resamples} resamples")
    print(f"leaderboard.load: {t_boot:.1f} s (of which reading and the full-sample check {t_read:.1f} s)")
    print(f"loop over distil.evaluation.metrics.compute (extrapolated from {few} resamples): {t_naive:.0f} s")
    print(f"speed-up: {t_naive / (t_boot - t_read):.0f}x on the bootstrap itself")


def _dirs(out: Path) -> dict[str, Path]:
    found = {"teacher": out / "teacher"}
    for d in sorted((out / "references").iterdir()) + sorted((out / "candidates").iterdir()):
        found[d.name] = d
    return found


if __name__ == "__main__":
    main()
