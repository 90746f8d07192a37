"""Time of the paired bootstrap (distil.evaluation.confidence) on the user's own tasks at news-emotions.yaml's
size: 9 rows (teacher, random_init, mlm_only, init_only, 5 candidates) x uci_news-like (2,000
examples, 4 classes) and goemotions-like (2,000 examples x 28 labels, multi-label) predictions
written by distil.evaluation.finetune.predictions_frame, against the plain alternative: rescoring every
resample with distil.evaluation.finetune.score_predictions (scikit-learn), per model.

    python benchmarks/bootstrap_tasks.py [--resamples 1000] [--rows 9]

Prints seconds for `leaderboard.load` with the resamples (reading the parquet files and the
full-sample check included), the score_predictions loop's seconds extrapolated from a few
resamples, and their ratio.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bootstrap import timed_load  # noqa: E402
from distil.evaluation.finetune import score_predictions  # noqa: E402
from tests.handmade import (  # noqa: E402
    DEFAULT_PARAMS, SPEC, own_task, task_labels, task_logits, write_json, write_task_runs,
)

NEWS, EMO = own_task("uci_news", 4), own_task("goemotions", 28, multi=True)


def build(out: Path, rows: int, n: int) -> list[Path]:
    write_json(out / "spec.json", {**SPEC, "glue": {"tasks": []},
                                   "search": {**SPEC["search"], "objectives": ["tasks_macro"]},
                                   "tasks": [asdict(NEWS), asdict(EMO)]})
    data = {NEWS.name: task_labels(NEWS, n), EMO.name: task_labels(EMO, n)}
    dirs = []
    for i in range(rows):
        kind = "teacher" if i == 0 else "reference" if i < 4 else "student"
        where = out / "teacher" if i == 0 else out / ("references" if i < 4 else "candidates") / f"r{i:02d}"
        runs = [r for t in (NEWS, EMO) for r in
                write_task_runs(where, t, data[t.name], {0: task_logits(t, data[t.name][1], 0.95 - 0.05 * i, seed=i)},
                                1.0)]
        write_json(where / "result.json",
                   {"kind": kind, "params": {**DEFAULT_PARAMS, "alpha_ce": 0.1 * i}, "glue": runs})
        dirs.append(where)
    return dirs


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--resamples", type=int, default=1000)
    p.add_argument("--rows", type=int, default=9)
    p.add_argument("--examples", type=int, default=2000)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        dirs = build(Path(tmp), args.rows, args.examples)
        board, t_read, t_boot = timed_load(tmp, args.resamples)
        assert board.frame["pct_teacher_tasks_lo"].notna().sum() == args.rows, board.bootstrap["excluded"]
        frames = {t.name: [pd.read_parquet(d / "predictions" / f"{t.name}-seed0.parquet") for d in dirs]
                  for t in (NEWS, EMO)}
        few, rng = 5, np.random.default_rng(0)
        t0 = time.perf_counter()
        for _ in range(few):
            take = rng.integers(0, args.examples, args.examples)
            for t in (NEWS, EMO):
                for frame in frames[t.name]:
                    score_predictions(t, frame.iloc[take])
        t_naive = (time.perf_counter() - t0) * args.resamples / few
    print(f"{args.rows} rows x uci_news ({args.examples} x 4 classes) + goemotions ({args.examples} x 28 labels), "
          f"{args.resamples} resamples")
    print(f"leaderboard.load: {t_boot:.1f} s (of which reading and the full-sample check {t_read:.1f} s)")
    print(f"loop over finetune.score_predictions (extrapolated from {few} resamples): {t_naive:.0f} s")
    print(f"speed-up: {t_naive / (t_boot - t_read):.0f}x on the bootstrap itself")


if __name__ == "__main__":
    main()
