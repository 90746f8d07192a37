"""GLUE as nine rows of the general task table (distil.config.tasks.Task).

Each row says which text columns it reads, its problem type (stsb: regression), its metrics and
its validation splits (mnli: matched `_m` and mismatched `_mm`). The rows' `data` is bound to a
spec's `glue.data` by `glue_task`: the hub (`nyu-mll/glue`, one config per task) or a local dir
of `<task>/<split>.parquet` in the HF schema, where a `<split>_subset.parquet` stands in for a
split that is only available in part.
"""

from __future__ import annotations

import os
from dataclasses import replace

from distil.config.tasks import REGRESSION, Task, load_split as _load_split

HUB = "nyu-mll/glue"


def _row(name, text_fields, num_labels, metrics, eval_splits=None, small=False) -> Task:
    return Task(name=name, data=HUB, config=name, text_fields=text_fields, num_labels=num_labels, metrics=metrics,
                problem_type=REGRESSION if num_labels == 1 else "single_label_classification",
                eval_splits=eval_splits or {"": "validation"}, small=small)


TASKS: dict[str, Task] = {
    t.name: t
    for t in [
        _row("cola", ("sentence",), 2, ("mcc",), small=True),
        _row("sst2", ("sentence",), 2, ("accuracy",)),
        _row("mrpc", ("sentence1", "sentence2"), 2, ("f1", "accuracy"), small=True),
        _row("stsb", ("sentence1", "sentence2"), 1, ("pearson", "spearmanr"), small=True),
        _row("qqp", ("question1", "question2"), 2, ("accuracy", "f1")),
        _row(
            "mnli", ("premise", "hypothesis"), 3, ("accuracy",),
            {"_m": "validation_matched", "_mm": "validation_mismatched"},
        ),
        _row("qnli", ("question", "sentence"), 2, ("accuracy",)),
        _row("rte", ("sentence1", "sentence2"), 2, ("accuracy",), small=True),
        _row("wnli", ("sentence1", "sentence2"), 2, ("accuracy",), small=True),
    ]
}


def score_columns() -> list[str]:
    """Leaderboard score columns in GLUE order: cola, sst2, ..., mnli_m, mnli_mm, ..."""
    return [c for t in TASKS.values() for c in t.columns()]


def glue_task(data: str, name: str) -> Task:
    """GLUE row `name` reading from `data`: a local dir (`<data>/<name>/<split>.parquet`) or a hub id."""
    if os.path.isdir(data):
        return replace(TASKS[name], data=os.path.join(data, name), config=None)
    return replace(TASKS[name], data=data, config=name)


def glue_tasks(data: str, wanted) -> list[Task]:
    """The wanted GLUE rows (names, or "all") bound to `data` that have a train split and at least
    one validation split there, in GLUE order."""
    from distil.config.tasks import available

    names = list(TASKS) if wanted == "all" else [t for t in TASKS if t in wanted]
    if os.path.isdir(data):  # a local GLUE dir without a task's folder lacks that task (never a hub id)
        names = [n for n in names if os.path.isdir(os.path.join(data, n))]
    return [t for t in (glue_task(data, n) for n in names) if available(t)]


def available_tasks(data: str, wanted) -> list[str]:
    """Names of glue_tasks(data, wanted)."""
    return [t.name for t in glue_tasks(data, wanted)]


def load_split(data: str, task: str, split: str, limit: int | None):
    """(Dataset, is_subset) of one split of GLUE task `task` in `data` (see distil.config.tasks.load_split)."""
    return _load_split(glue_task(data, task), split, limit)


def find_split(data: str, task: str, split: str) -> tuple[str, bool] | None:
    """Where a split of GLUE task `task` in `data` lives: (file or hub id, is_subset), or None."""
    from distil.config.tasks import find_split as _find

    if os.path.isdir(data) and not os.path.isdir(os.path.join(data, task)):
        return None
    return _find(glue_task(data, task), split)
