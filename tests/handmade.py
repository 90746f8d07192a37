"""Hand-made results dirs with saved predictions, laid out as a sweep writes them (README "Results
layout"), their result.json scores computed from the predictions by distil.metrics."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from distil import metrics
from distil.glue import TASKS

DEFAULT_PARAMS = {"alpha_ce": 5.0, "alpha_mlm": 2.0, "alpha_cos": 1.0, "alpha_mse": 0.0, "temperature": 2.0,
                  "layer_selection": "every_other"}
SPEC = {"name": "handmade", "glue": {"include_wnli": True},
        "search": {"alpha_ce": {"low": 0.0, "high": 5.0, "log": False}, "alpha_mlm": 2.0, "alpha_cos": 1.0,
                   "alpha_mse": 0.0, "temperature": {"low": 1.0, "high": 4.0, "log": False},
                   "layer_selection": {"choices": ["every_other", "first"]},
                   "points_to_evaluate": [{"alpha_ce": 5.0, "temperature": 2.0, "layer_selection": "every_other"}]}}


def write_json(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def labels_for(column: str, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(idx, labels) of a split: shuffled idx like a seeded sample, labels 60/40 (stsb: 0-5 floats)."""
    rng = np.random.default_rng([seed, len(column)])
    idx = rng.permutation(n * 3)[:n]
    task = TASKS[column.split("_")[0]]
    labels = np.round(rng.uniform(0, 5, n) * 5) / 5 if task.num_labels == 1 else (rng.random(n) < 0.4).astype(int)
    return idx, labels


def noisy(labels: np.ndarray, wrong: float, seed: int) -> np.ndarray:
    """Predictions that differ from the labels on about `wrong` of the examples."""
    rng = np.random.default_rng(seed)
    if labels.dtype.kind == "f":
        return (labels + rng.normal(0, 0.5 + 5 * wrong, len(labels))).astype(np.float32)
    flip = rng.random(len(labels)) < wrong
    return np.where(flip, 1 - labels, labels)


def write_row(row_dir: Path, kind: str, preds: dict[str, dict[int, np.ndarray]], split_data: dict, params: dict | None = None,
              **extra) -> dict:
    """Write predictions/<column>-seed<s>.parquet and a result.json whose GLUE scores are computed
    from them. preds: {column: {seed: predictions (N,)}}; split_data: {column: (idx, labels)}."""
    runs: dict[tuple[str, int], dict] = {}
    for column, by_seed in preds.items():
        task = next(t for t in TASKS.values() if column in [t.name + s for s in t.eval_splits])
        suffix = column[len(task.name):]
        idx, labels = split_data[column]
        for seed, p in by_seed.items():
            (row_dir / "predictions").mkdir(parents=True, exist_ok=True)
            pd.DataFrame({"idx": idx, "label": labels, "prediction": p}).to_parquet(
                row_dir / "predictions" / f"{column}-seed{seed}.parquet", index=False)
            run = runs.setdefault((task.name, seed), {"task": task.name, "seed": seed, "scores": {}, "subset_splits": [],
                                                      "seconds": 1.0})
            run["scores"][suffix] = {m: metrics.compute(m, labels, p) for m in task.metrics}
    result = {"kind": kind, "params": params or {}, "glue": list(runs.values()), "n_params": 11_000_000, **extra}
    write_json(row_dir / "result.json", result)
    return result
