"""Tasks as data: GLUE's nine and a user's own, one kind, and reading and checking their data.

A `Task` row says where its text is (a local dir of `<split>.parquet|.csv|.jsonl`, where a
`<split>_subset.*` file stands in for a split only available in part, or a hub dataset id +
config), which columns hold the text and the label, the problem type (transformers' names),
the number of labels, the metrics that score it and the splits it trains and is scored on.
distil.config.glue's table is nine such rows; a spec's `tasks:` section adds the user's. Fine-tuning
and scoring a model on a task: distil.evaluation.finetune.

Problem types: `single_label_classification` (softmax + cross-entropy over `num_labels` classes,
integer labels), `multi_label_classification` (sigmoid + BCE over `num_labels` independent yes/no
labels; the data holds a list of label ids per row, the model sees multi-hot float vectors;
predictions are probabilities >= `threshold`), `regression` (num_labels 1, MSE, float labels).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic.dataclasses import dataclass

SINGLE, MULTI, REGRESSION = "single_label_classification", "multi_label_classification", "regression"
# Metric names of distil.evaluation.metrics.compute that apply to each problem type; the first ones are the
# defaults of a task that names none (multi-class: accuracy and macro-F1; multi-label: the three
# of the toxic-comment and GoEmotions papers).
METRICS = {
    SINGLE: ("accuracy", "macro_f1", "f1", "mcc"),  # f1: binary tasks only (positive class 1)
    MULTI: ("micro_f1", "macro_f1", "roc_auc"),
    REGRESSION: ("pearson", "spearmanr"),
}
DEFAULT_METRICS = {SINGLE: ("accuracy", "macro_f1"), MULTI: METRICS[MULTI], REGRESSION: METRICS[REGRESSION]}
FORMATS = {"parquet": "parquet", "csv": "csv", "jsonl": "json"}  # file suffix -> datasets builder


@dataclass(frozen=True, config=ConfigDict(extra="forbid"))
class Task:
    """One task as data. A spec's `tasks:` entries are these fields (YAML keys of the same names).

    name: leaderboard column (+ eval split suffix) and prediction file stem; unique among GLUE's
      and the spec's tasks.
    data: local dir of `<split>.parquet|.csv|.jsonl` (optional `labels.json`: label names in id
      order), or a hub dataset id with `config`.
    text_fields: one text column, or two (a sentence pair).
    label_field: int class id (single-label), list of class ids (multi-label) or float (regression).
    num_labels: None = read from `labels.json` or the data's `ClassLabel` (1 for regression).
    metrics: names from METRICS[problem_type]; empty = DEFAULT_METRICS. The task's score on a
      split is their mean (as GLUE's mrpc = mean of F1 and accuracy).
    eval_splits: leaderboard column suffix -> split, e.g. mnli {"_m": ..., "_mm": ...}.
    threshold: multi-label only: a label is predicted when its probability is >= threshold.
    small: few eval examples, scores swing between seeds (runs every fine-tuning seed).
    """

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_]+$")]
    data: str
    config: str | None = None
    text_fields: tuple[str, ...] = Field(("text",), min_length=1, max_length=2)
    label_field: str = "label"
    problem_type: Literal["single_label_classification", "multi_label_classification", "regression"] = SINGLE
    num_labels: int | None = Field(None, ge=0)
    label_names: tuple[str, ...] | None = None
    metrics: tuple[str, ...] = Field((), validate_default=True)
    train_split: str = "train"
    eval_splits: dict[str, str] = Field(default_factory=lambda: {"": "validation"}, min_length=1)
    threshold: float = Field(0.5, gt=0, lt=1)
    small: bool = False

    @field_validator("num_labels")
    @classmethod
    def _num_labels_fit_problem(cls, v, info: ValidationInfo):
        kind = info.data.get("problem_type")
        if v is None:
            return 1 if kind == REGRESSION else None
        if kind == REGRESSION and v != 1:
            raise ValueError(f"a regression task has num_labels 1, not {v}")
        if kind == SINGLE and v < 2:
            raise ValueError(f"a single-label task needs at least 2 classes, not {v}")
        if kind == MULTI and v < 1:
            raise ValueError("a multi-label task needs at least one label (the label vocabulary is empty)")
        return v

    @field_validator("metrics")
    @classmethod
    def _metrics_fit_problem(cls, v, info: ValidationInfo):
        kind = info.data.get("problem_type")
        if kind is None:  # problem_type itself failed; that error is reported
            return v
        if not v:
            return DEFAULT_METRICS[kind]
        bad = [m for m in v if m not in METRICS[kind]]
        if bad:
            raise ValueError(f"unknown metric(s) {bad} for {kind}; use {', '.join(METRICS[kind])}")
        if "f1" in v and info.data.get("num_labels") not in (None, 2):
            raise ValueError("f1 is binary F1 of class 1; this task has more classes: use macro_f1")
        return tuple(v)

    @field_validator("eval_splits")
    @classmethod
    def _suffixes(cls, v):
        bad = [s for s in v if not all(c.isalnum() or c == "_" for c in s)]
        if bad:
            raise ValueError(f"column suffixes {bad} may hold only letters, digits and _")
        return v

    @model_validator(mode="after")
    def _names_fit_labels(self):
        if self.label_names is not None and self.num_labels is not None and len(self.label_names) != self.num_labels:
            raise ValueError(f"label_names has {len(self.label_names)} names but num_labels is {self.num_labels}")
        return self

    def columns(self) -> list[str]:
        """Leaderboard score columns of this task: name + each eval split's suffix."""
        return [self.name + suffix for suffix in self.eval_splits]


def score_columns(tasks) -> list[str]:
    """Leaderboard score columns of `tasks` (an iterable of Task), in their order."""
    return [c for t in tasks for c in t.columns()]


# ---------------------------------------------------------------- data
def find_split(task: Task, split: str) -> tuple[str, bool] | None:
    """Where a split lives: (file path or hub id, is_subset), or None if a local dir lacks it."""
    if not os.path.isdir(task.data):
        return task.data, False
    for stem, subset in ((split, False), (f"{split}_subset", True)):
        for suffix in FORMATS:
            path = Path(task.data) / f"{stem}.{suffix}"
            if path.is_file():
                return str(path), subset
    return None


def available(task: Task) -> bool:
    """The task has its train split and at least one eval split (hub data: assumed present)."""
    return (find_split(task, task.train_split) is not None
            and any(find_split(task, s) for s in task.eval_splits.values()))


def load_split(task: Task, split: str, limit: int | None = None):
    """(Dataset, is_subset) of one split in the seeded order, its first `limit` rows, or None if
    a local dir lacks the split. Rows keep their `idx` column (added as the row number in the
    file when the data has none).

    The order is `shuffle(seed=0)` for every model and seed, so `limit` k is the same k rows every
    time and a smaller limit gives a prefix of a larger one."""
    from datasets import load_dataset

    found = find_split(task, split)
    if found is None:
        return None
    source, subset = found
    if os.path.isfile(source):
        ds = load_dataset(FORMATS[source.rsplit(".", 1)[1]], data_files={split: source}, split=split)
    else:
        ds = load_dataset(source, task.config, split=split)
    if "idx" not in ds.column_names:
        ds = ds.add_column("idx", list(range(len(ds))))
    ds = ds.shuffle(seed=0)
    return ds.select(range(min(limit, len(ds)))) if limit is not None else ds, subset


def _label_info(task: Task, ds) -> tuple[int | None, tuple[str, ...] | None]:
    """(num_labels, label names) from `<data>/labels.json`, else the label column's ClassLabel."""
    from datasets import ClassLabel

    labels_json = Path(task.data) / "labels.json"
    if labels_json.is_file():
        names = tuple(json.loads(labels_json.read_text()))
        return len(names), names
    feature = ds.features.get(task.label_field)
    feature = getattr(feature, "feature", feature)  # List(ClassLabel) of a multi-label column
    if isinstance(feature, ClassLabel):
        return feature.num_classes, tuple(feature.names)
    return None, None


def _check_columns(task: Task, split: str, ds) -> None:
    where = f"split {split!r} (columns: {', '.join(ds.column_names)})"
    for f in task.text_fields:
        if f not in ds.column_names:
            raise ValueError(f"text_fields: no column {f!r} in {where}; fix text_fields")
    if task.label_field not in ds.column_names:
        raise ValueError(f"label_field: no column {task.label_field!r} in {where}; fix label_field")


def check_split(task: Task, split: str, ds) -> None:
    """Check one loaded split against the task: text and label columns present, labels of the
    problem type's shape, class ids in [0, num_labels).

    Raises:
        ValueError: `<field>: <what is wrong>; <fix>` naming the task's field.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    _check_columns(task, split, ds)
    col = ds.data.column(task.label_field)
    if col.null_count:
        raise ValueError(f"label_field: {col.null_count} rows of split {split!r} have no label; drop them")
    listed = pa.types.is_list(col.type) or pa.types.is_large_list(col.type)
    if task.problem_type == REGRESSION:
        if not (pa.types.is_floating(col.type) or pa.types.is_integer(col.type)):
            raise ValueError(f"label_field: {task.label_field!r} is {col.type} in split {split!r}; a regression "
                             "label is a number")
        return
    if task.problem_type == SINGLE and listed:
        raise ValueError(f"label_field: {task.label_field!r} holds lists in split {split!r} but problem_type is "
                         f"{SINGLE}; use {MULTI}")
    if task.problem_type == MULTI and not listed:
        raise ValueError(f"label_field: {task.label_field!r} is {col.type} in split {split!r}; a {MULTI} label is a "
                         "list of class ids (parquet or jsonl)")
    ids = pc.list_flatten(col) if listed else col
    if not pa.types.is_integer(ids.type):
        raise ValueError(f"label_field: {task.label_field!r} holds {ids.type} in split {split!r}; labels must be "
                         "integer class ids")
    if len(ids):
        lo, hi = pc.min_max(ids).values()
        if lo.as_py() < 0 or hi.as_py() >= task.num_labels:
            bad = hi.as_py() if hi.as_py() >= task.num_labels else lo.as_py()
            raise ValueError(f"label_field: label id {bad} in split {split!r} is outside "
                             f"[0, num_labels={task.num_labels}); fix the data or num_labels / labels.json")


def resolve_task(task: Task) -> Task:
    """The task with num_labels and label_names read from its data, after checking every split
    it uses (files present, columns, labels). Called when a spec is loaded, before any compute.

    A hub-id task reads nothing here (offline runs must still validate): it needs `num_labels`,
    and its splits are checked when `prepare_task_data` loads them.

    Raises:
        ValueError: `<field>: <what is wrong>; <fix>` naming the task's field.
    """
    import datasets

    if not os.path.isdir(task.data):
        if task.num_labels is None:
            raise ValueError(f"num_labels: {task.data!r} is a hub dataset id; give num_labels (or a local dir with "
                             "labels.json)")
        return task
    quiet = datasets.are_progress_bars_disabled()
    datasets.disable_progress_bars()  # a spec error is one line on stderr, without the bars of reading the data
    try:
        return _resolve_local(task)
    finally:
        if not quiet:
            datasets.enable_progress_bars()


def _resolve_local(task: Task) -> Task:
    from dataclasses import replace

    splits = {"train_split": [task.train_split], "eval_splits": list(task.eval_splits.values())}
    loaded = {}
    for field, names in splits.items():
        for split in names:
            found = load_split(task, split)
            if found is None:
                raise ValueError(f"{field}: no {split}.parquet, {split}.csv or {split}.jsonl in {task.data}; "
                                 f"add the file or fix {field}")
            loaded[split] = found[0]
            _check_columns(task, split, found[0])
    n, names = _label_info(task, loaded[task.train_split])
    if task.problem_type == REGRESSION:
        n, names = 1, None
    elif n is None and task.num_labels is None:
        raise ValueError(f"num_labels: not given and {task.data} has no labels.json or ClassLabel column; give "
                         "num_labels")
    elif n is not None and task.num_labels is not None and n != task.num_labels:
        raise ValueError(f"num_labels: {task.num_labels} given but the data has {n} labels; fix or drop num_labels")
    try:
        resolved = replace(task, num_labels=task.num_labels if n is None else n, label_names=names or task.label_names)
    except ValidationError as e:  # e.g. an empty labels.json
        why = e.errors()[0]["msg"].removeprefix("Value error, ")
        raise ValueError(f"num_labels: {why} (read from {task.data})") from None
    for split, ds in loaded.items():
        check_split(resolved, split, ds)
    return resolved
