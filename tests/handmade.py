"""Hand-made results dirs with saved predictions, laid out and written as a sweep writes them (through
distil.store.records), their result.json scores computed from the predictions by distil.evaluation.metrics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from distil.config.glue import TASKS
from distil.evaluation import metrics
from distil.store import records

DEFAULT_PARAMS = {"alpha_ce": 5.0, "alpha_mlm": 2.0, "alpha_cos": 1.0, "alpha_mse": 0.0, "temperature": 2.0,
                  "layer_selection": "every_other"}
SPEC = {"name": "handmade", "glue": {"include_wnli": True},
        "search": {"alpha_ce": {"low": 0.0, "high": 5.0, "log": False}, "alpha_mlm": 2.0, "alpha_cos": 1.0,
                   "alpha_mse": 0.0, "temperature": {"low": 1.0, "high": 4.0, "log": False},
                   "layer_selection": {"choices": ["every_other", "first"]},
                   "points_to_evaluate": [{"alpha_ce": 5.0, "temperature": 2.0, "layer_selection": "every_other"}]}}


# The files of a row dir that have a record: a hand-written one goes through it, as the sweep's do.
RECORDS = {"result.json": records.Result, "config.json": records.TrialConfig, "status.json": records.TrialStatus}


def write_json(path: Path, obj: dict) -> None:
    """Write a results file as the sweep does: result.json, config.json and status.json through their
    record (distil.store.records: keys it does not know are dropped, absent ones stay absent),
    progress.json through Rung; any other file (spec.json, ...) as plain JSON. Atomic, parents made."""
    path = Path(path)
    if path.name in RECORDS:
        obj = RECORDS[path.name].from_json(obj).to_json()
    elif path.name == "progress.json":
        obj = {"rungs": [records.Rung.from_json(r).to_json() for r in obj["rungs"]]}
    records.write_json(path, obj)


def write_result(row_dir: Path | records.RowDir, result: dict | records.Result) -> dict:
    """Write a row's result.json through distil.store.records.Result; returns the dict written."""
    row = row_dir if isinstance(row_dir, records.RowDir) else records.RowDir(row_dir, "row")
    record = result if isinstance(result, records.Result) else records.Result.from_json(result)
    row.write_result(record)
    return record.to_json()


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


def write_row(row_dir: Path, kind: str, preds: dict[str, dict[int, np.ndarray]], split_data: dict,
              params: dict | None = None, **extra) -> dict:
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
            run = runs.setdefault((task.name, seed), {"task": task.name, "seed": seed, "scores": {},
                                                      "subset_splits": [],
                                                      "seconds": 1.0})
            run["scores"][suffix] = {m: metrics.compute(m, labels, p) for m in task.metrics}
    return write_result(row_dir, records.Result(kind=kind, params=params or {}, glue=tuple(runs.values()),
                                                n_params=11_000_000, **extra))


# ---------------------------------------------------------------- the user's own tasks
def own_task(name: str, num_labels: int, multi: bool = False):
    """A spec task (distil.config.tasks.Task) as spec.json holds it once resolved: 4-class single-label
    or multi-label with `num_labels` labels (the data path is not read by the leaderboard)."""
    from distil.config.tasks import Task

    return Task(name=name, data=f"/data/{name}", label_field="labels" if multi else "label", num_labels=num_labels,
                problem_type="multi_label_classification" if multi else "single_label_classification")


def task_labels(task, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(idx, labels) of an own task's eval split: single-label class ids with unequal class
    shares (class 2 the majority, ~40 %), or multi-label (n, L) 0/1 with label frequencies from
    1 % to 30 % (every label below half: the per-label majority is all-negative), >= 1 per row."""
    rng = np.random.default_rng([seed, len(task.name), task.num_labels])
    idx = rng.permutation(n * 3)[:n]
    if task.problem_type != "multi_label_classification":
        share = np.ones(task.num_labels)
        share[min(2, task.num_labels - 1)] = 2.0  # 4 classes: 40 % class 2, 20 % each other
        return idx, rng.choice(task.num_labels, n, p=share / share.sum())
    freq = np.linspace(0.01, 0.3, task.num_labels)
    y = (rng.random((n, task.num_labels)) < freq).astype(np.float32)
    y[np.arange(n), rng.choice(task.num_labels, n, p=freq / freq.sum())] = 1.0
    return idx, y


def task_logits(task, labels: np.ndarray, quality: float, seed: int) -> np.ndarray:
    """(n, num_labels) logits of a model that is right about `quality` of the time: single-label,
    the true class with probability `quality`, else a random one; multi-label, logits
    (2y - 1)·3·quality + N(0, 1) - 2 (quality 0: constant -5, an all-negative model)."""
    rng = np.random.default_rng(seed)
    n, k = len(labels), task.num_labels
    if task.problem_type != "multi_label_classification":
        pred = np.where(rng.random(n) < quality, labels, rng.integers(0, k, n))
        return np.eye(k, dtype=np.float32)[pred] * 3 + rng.normal(0, 0.1, (n, k)).astype(np.float32)
    if quality == 0:
        return np.full((n, k), -5.0, dtype=np.float32)
    return ((2 * labels - 1) * 3 * quality + rng.normal(0, 1, (n, k)) - 2).astype(np.float32)


def write_task_runs(row_dir: Path, task, split_data: tuple, logits_by_seed: dict[int, np.ndarray],
                    seconds: float) -> list[dict]:
    """Save an own task's predictions as distil.evaluation.finetune does (predictions_frame) and return its
    runs (finetune_and_evaluate's dicts), scored by finetune.score_predictions."""
    from distil.evaluation.finetune import predictions_frame, score_predictions

    idx, labels = split_data
    runs = []
    for seed, logits in logits_by_seed.items():
        df = predictions_frame(task, {"idx": idx, "labels": labels}, logits)
        (row_dir / "predictions").mkdir(parents=True, exist_ok=True)
        df.to_parquet(row_dir / "predictions" / f"{task.name}-seed{seed}.parquet", index=False)
        runs.append({"task": task.name, "seed": seed, "scores": {"": score_predictions(task, df)}, "subset_splits": [],
                     "n_eval": len(df), "seconds": seconds})
    return runs
