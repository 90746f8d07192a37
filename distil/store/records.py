"""The results dir of a sweep: every path into it and every JSON file of it, written and read here.

Results live in plain files so a leaderboard can be rebuilt at any time and a killed sweep
resumed (Tune's own tables can drop resumed trials):

    <out>/spec.json, run.json                 the validated spec; what `resume` needs (RunState)
    <out>/teacher/result.json                 reference row (teacher's GLUE scores or perplexity, head-fit report)
    <out>/teacher/proxy.json                  the teacher's early-stopping proxy score (ProxyPoint)
    <out>/teacher/finetuned/<task>/           the teacher fine-tuned on a task_distill task
    <out>/references/<name>/result.json       random_init, mlm_only (clm_only), paper_defaults, init_only-<rule>,
                                              task-kd-<task>; a student narrower than the teacher adds its shape:
                                              mlm_only-4L192H12F768
    <out>/references/init_only-<rule>/proxy-<n>L.json   proxy score of that undistilled n-layer student
                                              (narrower: init_only-<rule>-<n>L<hidden>H<heads>F<ffn>/proxy-<n>L.json)
    <out>/candidates/<trial_id>/config.json   written when the trial starts (TrialConfig)
    <out>/candidates/<trial_id>/progress.json one entry per finished rung (Rung)
    <out>/candidates/<trial_id>/result.json   written when it ends (Result: scores, objectives, params)
    <out>/candidates/<trial_id>/status.json   `stopped` (early stopping) or `failed` (with the reason) (TrialStatus)
    <out>/candidates/<trial_id>/student/      the distilled student (HF dir; pruned for most: student.pruned says why)
    <out>/confirmation/plan.json              the finalists, distillation seeds and fine-tuning seeds last started
    <out>/confirmation/<name>/result.json     a rerun row (paper_defaults or a finalist's trial id) of the
                                              confirmation stage (Result, kind "confirmation"): every run's GLUE dicts
    <out>/confirmation/<name>/run<d>.json     distillation run d done and fine-tuned (ConfirmationRun)
    <out>/confirmation/<name>/predictions/run<d>/<task><split>-seed<s>.parquet   run d's predictions
    <out>/confirmation/<name>/student-run<d>/ run d's student while it is fine-tuned (deleted then)
    <out>/**/predictions/<task><split>-seed<s>.parquet
    <out>/logs/workers.log, logs/live/<run>.json   the workers' output; a Train run's last step, loss, tokens/s
    <out>/optuna.db                           the Optuna study (unless search.storage names another)
    <out>/tune/, <out>/train/                 Tune's experiment state, Ray Train's checkpoints (written by Ray)
    <out>/leaderboard.*, report.html, plots/, best_student/   the report (distil.report), rebuilt at will

The records are frozen dataclasses; `to_json()` gives the dict written (the keys and values sweeps
have always written, absent optional fields left out; a candidate's result.json, config.json,
progress.json, status.json and run.json byte for byte as before, a reference row's result.json
with the same keys in the candidates' order) and `from_json(d)` reads one back, tolerating files
of older sweeps (a missing optional key reads as None). A file that is not JSON raises ValueError
(json.JSONDecodeError); the leaderboard turns that into a `corrupt` row.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from distil.config.objectives import sort_key

PROXY = "proxy_score"  # the early-stopping proxy's score (Tune metric and the rung files' key)
BUDGET = "rung_budget"  # rf^k at rung k: the rung's budget (distil.search.halving)
# proxy_score minus the proxy score of the undistilled student of the trial's layer rule: what the
# distillation added, the score successive halving decides on (fair to rules that start lower).
GAIN = "proxy_gain_over_init"
INIT_ONLY_PREFIX = "init_only-"
PAPER_DEFAULTS = "paper_defaults"  # the reference row run with search.points_to_evaluate[0]
CLM_ONLY = "clm_only"  # a causal teacher's twin of mlm_only: random init, the causal LM loss alone, no teacher
TASK_KD_PREFIX = "task-kd-"
CONFIRMATION_DIR = "confirmation"  # <out>/confirmation/<name>: the confirmation stage's rows
CONFIRM_PREFIX = "confirm-"  # their Ray Train runs: confirm-<name>-d<d> (confirm_run_name)
SPEC_FILE = "spec.json"
RUN_FILE = "run.json"
TRAIN_DIR = "train"  # under the results dir (or the --output URI): the Ray Train runs' checkpoints
TUNE_DIR = "tune"  # likewise: Tune's experiment state (what `resume` restores)


def write_json(path: str | os.PathLike, obj) -> None:
    """Write `obj` as indented JSON atomically (a temporary file renamed over `path`), parents created:
    a reader, or a sweep killed mid-write, never sees half a file. Values JSON lacks are written as str."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=str))
    tmp.replace(path)


def read_json(path: str | os.PathLike):
    """The JSON value in `path`. Raises OSError (missing, unreadable) or ValueError (not JSON)."""
    return json.loads(Path(path).read_text())


def shape_key(n_layers: int, hidden_size: int | None = None, num_attention_heads: int | None = None,
              intermediate_size: int | None = None) -> str:
    """The shape part of a reference row's name and of a profile's key: '' at the teacher's width (no
    width given: a StudentShape's `given()` is empty, a leaderboard row's width columns are empty), else
    `<n>L<hidden>H<heads>F<ffn>` (4 layers, 192 wide, 12 heads, FFN 768 -> '4L192H12F768'). A width given
    is a resolved one (distil.config.rules.sweep_shape): all three fields set.

    Raises:
        ValueError: some but not all of the width fields are given.
    """
    width = (hidden_size, num_attention_heads, intermediate_size)
    given = [w for w in width if w is not None and w == w]  # NaN (an empty leaderboard cell) is not given
    if not given:
        return ""
    if len(given) < 3:
        raise ValueError(f"shape {width}: give hidden size, heads and FFN size all, or none (the teacher's width)")
    return f"{int(n_layers)}L{int(hidden_size)}H{int(num_attention_heads)}F{int(intermediate_size)}"


def row_name(base: str, key: str = "") -> str:
    """A reference row's name: `base` (random_init, mlm_only, ...) at the teacher's width, `<base>-<key>`
    for a student of shape `key` (shape_key), so rows of different shapes never share a dir."""
    return f"{base}-{key}" if key else base


def base_name(name: str) -> str:
    """A reference row's name without its shape suffix (row_name's inverse): 'mlm_only-4L192H12F768' ->
    'mlm_only', 'init_only-every_other-4L192H12F768' -> 'init_only-every_other'; unchanged without one."""
    head, _, tail = name.rpartition("-")
    return head if head and _SHAPE_KEY.fullmatch(tail) else name


_SHAPE_KEY = re.compile(r"\d+L\d+H\d+F\d+")


def init_only_name(rule: str, key: str = "") -> str:
    """Reference-row name of the undistilled student initialised with layer rule `rule` (a
    distil.config.layers.layer_key): `init_only-<rule>`, commas as dashes (a dir name); a student of
    another width than the teacher's adds its shape (`key`, shape_key): `init_only-<rule>-4L192H12F768`."""
    return row_name(f"{INIT_ONLY_PREFIX}{rule.replace(',', '-')}", key)


def train_run_name(trial_id: str) -> str:
    """The Ray Train run of a trial's distillation (`<train storage>/distill-<trial_id>`; its live file too)."""
    return f"distill-{trial_id}"


def live_file(logs_dir: str | os.PathLike, run_name: str) -> Path:
    """`<logs>/live/<run>.json`: what a Train run's rank 0 writes at each checkpoint (step, loss,
    tokens/s) for the sweep's console (distil.search.tuner.EventLog)."""
    return Path(logs_dir) / "live" / f"{run_name}.json"


def confirm_run_name(name: str, run: int) -> str:
    """The Ray Train run of distillation run `run` (0, 1, ...) of confirmation row `name`."""
    return f"{CONFIRM_PREFIX}{name}-d{run}"


def task_kd_name(task: str) -> str:
    """Reference-row name of task-specific distillation on `task`."""
    return f"{TASK_KD_PREFIX}{task}"


# ---------------------------------------------------------------- records
def _without_none(d: dict) -> dict:
    return {k: v for k, v in d.items() if v is not None}


@dataclass(frozen=True)
class ProxyPoint:
    """A model's score on the early-stopping proxy: per task (x100), their mean, and the
    fine-tuning seconds it cost (summed over the proxy's runs). A causal teacher's perplexity proxy: its
    held-out perplexity, sequences and scored tokens, −ln(perplexity) (nats per token) and the scoring's
    seconds (distil.search.finetune_runs.proxy_point)."""

    proxy: dict  # task name -> task score; perplexity proxy: "perplexity", "sequences", "tokens"
    proxy_score: float
    proxy_seconds: float

    def to_json(self) -> dict:
        return {"proxy": self.proxy, PROXY: self.proxy_score, "proxy_seconds": self.proxy_seconds}

    @classmethod
    def from_json(cls, d: dict) -> ProxyPoint:
        return cls(proxy=d.get("proxy", {}), proxy_score=d[PROXY], proxy_seconds=d.get("proxy_seconds", 0.0))


@dataclass(frozen=True)
class Rung:
    """One finished rung of a trial's distillation (progress.json, and result.json's `rungs`)."""

    rung: int  # k = 0, 1, ...
    fraction: float  # share of the planned steps done at its end
    step: int | None
    tokens: int | None  # cumulative real tokens
    distill: dict  # distil.search.train.distill_student's metrics
    distill_seconds: float
    rung_budget: float | None = None  # with early stopping: rf^k
    proxy: ProxyPoint | None = None  # with early stopping: the student's proxy score after this rung
    init_proxy_score: float | None = None  # the undistilled student of the same layer rule (step 0)

    @property
    def proxy_score(self) -> float | None:
        return self.proxy.proxy_score if self.proxy else None

    @property
    def gain_over_init(self) -> float | None:
        """proxy_score minus init_proxy_score (None without either; rungs of older sweeps)."""
        if self.proxy_score is None or self.init_proxy_score is None:
            return None
        return self.proxy_score - self.init_proxy_score

    def to_json(self) -> dict:
        out = {"rung": self.rung, "fraction": self.fraction, "step": self.step, "tokens": self.tokens,
               "distill": self.distill, "distill_seconds": self.distill_seconds}
        if self.rung_budget is not None:
            out[BUDGET] = self.rung_budget
        if self.proxy is not None:
            out.update(self.proxy.to_json())
        if self.init_proxy_score is not None:
            out["init_proxy_score"] = self.init_proxy_score
        return out

    @classmethod
    def from_json(cls, d: dict) -> Rung:
        return cls(rung=d.get("rung"), fraction=d.get("fraction"), step=d.get("step"), tokens=d.get("tokens"),
                   distill=d.get("distill", {}), distill_seconds=d.get("distill_seconds", 0.0),
                   rung_budget=d.get(BUDGET), proxy=ProxyPoint.from_json(d) if d.get(PROXY) is not None else None,
                   init_proxy_score=d.get("init_proxy_score"))


@dataclass(frozen=True)
class TrialConfig:
    """config.json: a trial's full parameters, when it first started (time.time()) and its label
    ("paper defaults" for points_to_evaluate[0], else None)."""

    params: dict
    started: float | None = None
    label: str | None = None

    def to_json(self) -> dict:
        return {"params": self.params, "started": self.started, "label": self.label}

    @classmethod
    def from_json(cls, d: dict) -> TrialConfig:
        return cls(params=d.get("params") or {}, started=d.get("started"), label=d.get("label"))


@dataclass(frozen=True)
class TrialStatus:
    """status.json of a trial without result.json: `stopped` early (with its last rung, proxy
    score and step) or `failed` (with the first line of the error)."""

    status: str  # "stopped" | "failed"
    reason: str = ""
    rung: int | None = None
    proxy_score: float | None = None
    step: int | None = None

    def to_json(self) -> dict:
        if self.status == "stopped":
            return {"status": self.status, "rung": self.rung, PROXY: self.proxy_score, "step": self.step,
                    "reason": self.reason}
        return {"status": self.status, "reason": self.reason}

    @classmethod
    def from_json(cls, d: dict) -> TrialStatus:
        return cls(status=d.get("status"), reason=d.get("reason", ""), rung=d.get("rung"), proxy_score=d.get(PROXY),
                   step=d.get("step"))


@dataclass(frozen=True)
class Result:
    """result.json of a row: a candidate (`kind` student), the teacher, a reference row
    (`reference`), task-specific distillation (`task_distill`) or a row of the confirmation stage
    (`confirmation`: `glue` holds every distillation run's dicts, each with its run's index under
    "run"; `distill` is {"loss": mean over runs, "runs": each run's last metrics}).

    `glue` holds distil.evaluation.finetune.finetune_and_evaluate's dicts (one per task and
    seed); the other fields are left out of the file when None (rows that have no such thing, or
    were written before it existed)."""

    kind: str | None
    params: dict
    glue: tuple = ()  # finetune_and_evaluate dicts
    head_fit: dict | None = None  # teacher: the MLM-head fit report (distil.science.teacher)
    distill: dict | None = None  # last distillation metrics (students, mlm_only)
    rungs: tuple[Rung, ...] | None = None  # students
    n_params: int | None = None  # encoder parameters
    profile: dict | None = None  # distil.evaluation.profile.measure()
    distill_seconds: float | None = None
    proxy_seconds: float | None = None
    finetune_seconds: float | None = None  # fine-tuning + evaluation seconds summed over glue's runs
    provenance: dict | None = None  # distil.store.provenance.collect()
    objectives: dict | None = None  # students: objective name -> value (None: not finite)
    # with lm_eval: the row's WikiText perplexity per article (distil.evaluation.perplexity.score_saved_model)
    lm: dict | None = None

    def to_json(self) -> dict:
        out = {"kind": self.kind, "params": self.params, "head_fit": self.head_fit, "distill": self.distill,
               "rungs": [r.to_json() for r in self.rungs] if self.rungs is not None else None,
               "glue": list(self.glue), "n_params": self.n_params, "profile": self.profile,
               "distill_seconds": self.distill_seconds, "proxy_seconds": self.proxy_seconds,
               "finetune_seconds": self.finetune_seconds, "provenance": self.provenance,
               "objectives": self.objectives, "lm": self.lm}
        return _without_none(out)

    @classmethod
    def from_json(cls, d: dict) -> Result:
        if not isinstance(d, dict):
            raise ValueError(f"a result is a JSON object, not {type(d).__name__}")
        rungs = d.get("rungs")
        return cls(kind=d.get("kind"), params=d.get("params") or {}, glue=tuple(d.get("glue") or ()),
                   head_fit=d.get("head_fit"), distill=d.get("distill"),
                   rungs=tuple(Rung.from_json(r) for r in rungs) if rungs is not None else None,
                   n_params=d.get("n_params"), profile=d.get("profile"), distill_seconds=d.get("distill_seconds"),
                   proxy_seconds=d.get("proxy_seconds"), finetune_seconds=d.get("finetune_seconds"),
                   provenance=d.get("provenance"), objectives=d.get("objectives"), lm=d.get("lm"))


@dataclass(frozen=True)
class ConfirmationRun:
    """run<d>.json of a confirmation row: distillation run d (seed `distill_seed`) finished and
    fine-tuned; a resumed sweep does not redo it. `glue`: its finetune_and_evaluate dicts."""

    run: int
    distill_seed: int
    glue: tuple  # finetune_and_evaluate dicts, without the "run" key result.json adds
    distill: dict  # distil.search.train.distill_student's last metrics
    distill_seconds: float
    n_params: int | None = None  # encoder parameters of the rerun student

    def to_json(self) -> dict:
        return {"run": self.run, "distill_seed": self.distill_seed, "glue": list(self.glue), "distill": self.distill,
                "distill_seconds": self.distill_seconds, "n_params": self.n_params}

    @classmethod
    def from_json(cls, d: dict) -> ConfirmationRun:
        return cls(run=d["run"], distill_seed=d["distill_seed"], glue=tuple(d.get("glue") or ()),
                   distill=d.get("distill") or {}, distill_seconds=d.get("distill_seconds", 0.0),
                   n_params=d.get("n_params"))


@dataclass(frozen=True)
class RunState:
    """run.json: what `resume` needs besides the spec: the student depth when it is not searched,
    the cache dir, the architecture profiles (distil.evaluation.profile) and the provenance."""

    n_layers: int
    cache_dir: str
    profiles: dict = field(default_factory=dict)
    provenance: dict = field(default_factory=dict)

    REQUIRED = ("n_layers", "cache_dir", "profiles", "provenance")

    def to_json(self) -> dict:
        return {"n_layers": self.n_layers, "cache_dir": self.cache_dir, "profiles": self.profiles,
                "provenance": self.provenance}

    @classmethod
    def from_json(cls, d: dict) -> RunState:
        """Raises KeyError naming the first missing key."""
        return cls(**{k: d[k] for k in cls.REQUIRED})


# ---------------------------------------------------------------- the dirs
class RowDir:
    """The dir of one leaderboard row: the teacher, a reference row or a candidate."""

    def __init__(self, path: str | os.PathLike, kind: str):
        self.path, self.kind = Path(path), kind

    @property
    def name(self) -> str:
        """The row's model name on the leaderboard (the trial id for a candidate)."""
        return self.path.name

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r})"

    @property
    def result_file(self) -> Path:
        return self.path / "result.json"

    @property
    def student_dir(self) -> Path:
        """The row's model as a Hugging Face dir (students and reference students)."""
        return self.path / "student"

    @property
    def predictions_dir(self) -> Path:
        """`<task><split>-seed<s>.parquet` per fine-tuning run (distil.evaluation.finetune)."""
        return self.path / "predictions"

    def has_result(self) -> bool:
        return self.result_file.exists()

    def read_result(self) -> Result:
        """Raises OSError (no file), ValueError (not JSON, or not an object)."""
        return Result.from_json(read_json(self.result_file))

    def write_result(self, result: Result) -> None:
        write_json(self.result_file, result.to_json())


class TeacherDir(RowDir):
    """<out>/teacher: the teacher's row, its proxy score, its task-fine-tuned copies."""

    @property
    def proxy_file(self) -> Path:
        return self.path / "proxy.json"

    def read_proxy(self) -> ProxyPoint | None:
        """The teacher's proxy point; None if not scored (yet)."""
        return ProxyPoint.from_json(read_json(self.proxy_file)) if self.proxy_file.exists() else None

    def write_proxy(self, point: ProxyPoint) -> None:
        write_json(self.proxy_file, point.to_json())

    def finetuned_dir(self, task: str) -> Path:
        """The teacher fine-tuned on `task` (its first seed), for task-specific distillation."""
        return self.path / "finetuned" / task


class ReferenceDir(RowDir):
    """<out>/references/<name>: a reference row (random_init, mlm_only, init_only-<rule>, task-kd-<task>)."""

    def init_proxy_file(self, n_layers: int) -> Path:
        """An init_only row's proxy score of its undistilled `n_layers`-layer student."""
        return self.path / f"proxy-{n_layers}L.json"

    def init_proxies(self) -> dict[int, Path]:
        """{n_layers: proxy file} of an init_only row, by depth."""
        files = sorted(self.path.glob("proxy-*L.json"))
        return {int(p.stem.removeprefix("proxy-").removesuffix("L")): p for p in files}

    def read_init_proxy(self, n_layers: int) -> ProxyPoint | None:
        path = self.init_proxy_file(n_layers)
        return ProxyPoint.from_json(read_json(path)) if path.exists() else None

    def write_init_proxy(self, n_layers: int, point: ProxyPoint) -> None:
        write_json(self.init_proxy_file(n_layers), point.to_json())

    @property
    def rule(self) -> str | None:
        """The layer rule of an init_only row as its name spells it (commas as dashes, no shape suffix);
        else None."""
        name = base_name(self.name)
        return name.removeprefix(INIT_ONLY_PREFIX) if name.startswith(INIT_ONLY_PREFIX) else None


class CandidateDir(RowDir):
    """<out>/candidates/<trial_id>: one Tune trial's files."""

    @property
    def config_file(self) -> Path:
        return self.path / "config.json"

    @property
    def progress_file(self) -> Path:
        return self.path / "progress.json"

    @property
    def status_file(self) -> Path:
        return self.path / "status.json"

    @property
    def pruned_file(self) -> Path:
        """Says why the student's weights were deleted."""
        return self.path / "student.pruned"

    def has_config(self) -> bool:
        return self.config_file.exists()

    def has_status(self) -> bool:
        return self.status_file.exists()

    def read_config(self) -> TrialConfig | None:
        return TrialConfig.from_json(read_json(self.config_file)) if self.config_file.exists() else None

    def write_config(self, config: TrialConfig) -> None:
        write_json(self.config_file, config.to_json())

    def read_rungs(self) -> list[Rung]:
        """The rungs the trial has finished (progress.json), oldest first; [] before the first."""
        if not self.progress_file.exists():
            return []
        return [Rung.from_json(r) for r in read_json(self.progress_file)["rungs"]]

    def write_rungs(self, rungs: list[Rung]) -> None:
        write_json(self.progress_file, {"rungs": [r.to_json() for r in rungs]})

    def read_status(self) -> TrialStatus | None:
        return TrialStatus.from_json(read_json(self.status_file)) if self.status_file.exists() else None

    def ended(self) -> bool:
        """Whether the trial will report nothing more: it finished (result.json), or its status.json
        says `stopped` or `failed`."""
        status = self.read_status()
        return self.has_result() or (status is not None and status.status in ("stopped", "failed"))

    def write_status(self, status: TrialStatus) -> None:
        write_json(self.status_file, status.to_json())

    def clear_status(self) -> None:
        """A retried trial is not failed (yet)."""
        self.status_file.unlink(missing_ok=True)


class ConfirmationDir(RowDir):
    """<out>/confirmation/<name>: a row of the confirmation stage (`paper_defaults` or a finalist's
    trial id), distilled once per distillation seed; run d's predictions in predictions/run<d>/
    (distil.evaluation.confidence reads each such folder as one distillation run), none directly in
    predictions/."""

    def run_predictions_dir(self, run: int) -> Path:
        """`<task><split>-seed<s>.parquet` of distillation run `run` (finetune_and_evaluate's pred_dir)."""
        return self.predictions_dir / f"run{run}"

    def run_file(self, run: int) -> Path:
        return self.path / f"run{run}.json"

    def run_student_dir(self, run: int) -> Path:
        """Run `run`'s student (HF dir) while it is fine-tuned; deleted once run<d>.json is written."""
        return self.path / f"student-run{run}"

    def read_run(self, run: int) -> ConfirmationRun | None:
        """Run `run`'s record; None if it has not finished. Raises ValueError (not JSON), KeyError."""
        path = self.run_file(run)
        return ConfirmationRun.from_json(read_json(path)) if path.exists() else None

    def write_run(self, record: ConfirmationRun) -> None:
        write_json(self.run_file(record.run), record.to_json())


class ResultsDir:
    """A sweep's results dir (see the module docstring for the layout). Creates nothing until written."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"ResultsDir({str(self.path)!r})"

    # -- run state
    @property
    def spec_file(self) -> Path:
        return self.path / SPEC_FILE

    @property
    def run_file(self) -> Path:
        return self.path / RUN_FILE

    def write_spec(self, spec_json: str) -> None:
        """spec.json: the validated spec as pydantic dumps it (`SweepSpec.model_dump_json(indent=2)`)."""
        self.path.mkdir(parents=True, exist_ok=True)
        self.spec_file.write_text(spec_json)

    def read_spec(self) -> dict | None:
        """spec.json as a dict; None if it is missing, unreadable or not a JSON object (a reader
        then falls back to GLUE's defaults)."""
        try:
            spec = read_json(self.spec_file)
        except (OSError, ValueError):
            return None
        return spec if isinstance(spec, dict) else None

    def spec_text(self) -> str:
        """spec.json's text (for `SweepSpec.model_validate_json`). Raises OSError."""
        return self.spec_file.read_text()

    def sweep_name(self) -> str:
        """The spec's `name`, else the dir's name."""
        return (self.read_spec() or {}).get("name") or self.path.resolve().name

    def write_run_state(self, state: RunState) -> None:
        write_json(self.run_file, state.to_json())

    def read_run_state(self) -> RunState:
        """Raises OSError, ValueError (not JSON) or KeyError (a key missing)."""
        return RunState.from_json(read_json(self.run_file))

    # -- rows
    def teacher(self) -> TeacherDir:
        return TeacherDir(self.path / "teacher", "teacher")

    def reference(self, name: str) -> ReferenceDir:
        return ReferenceDir(self.path / "references" / name, "reference")

    def init_only(self, rule: str, key: str = "") -> ReferenceDir:
        """The `init_only-<rule>` reference row (of shape `key`, shape_key: '' the teacher's width)."""
        return self.reference(init_only_name(rule, key))

    def task_kd(self, task: str, key: str = "") -> ReferenceDir:
        return self.reference(row_name(task_kd_name(task), key))

    def references(self) -> list[ReferenceDir]:
        """Every reference row's dir that has a result.json, by name."""
        return [self.reference(p.parent.name) for p in sorted(self.path.glob("references/*/result.json"))]

    def init_onlys(self) -> list[ReferenceDir]:
        """Every init_only-<rule> dir (with or without result.json), by name."""
        return [self.reference(p.name) for p in sorted(self.path.glob(f"references/{INIT_ONLY_PREFIX}*")) if p.is_dir()]

    def candidate(self, trial_id: str) -> CandidateDir:
        return CandidateDir(self.path / "candidates" / trial_id, "student")

    def candidates(self) -> list[CandidateDir]:
        """Every candidate's dir, by trial id (trials that wrote nothing yet included)."""
        return [CandidateDir(p, "student") for p in sorted((self.path / "candidates").glob("*")) if p.is_dir()]

    def by_selection(self, objective: str) -> list[tuple[str, float | None]]:
        """[(trial id, its selection score)] for every finished candidate (result.json), best first by
        `objective` (the spec's first search.objectives, read from result.json "objectives": the scores
        the search ranked on, on held-out training rows), ties by trial id; a missing or non-finite score
        (None) sorts last. The one ranking of "the best students": the janitor keeps the first
        search.keep_students, the confirmation stage takes the first confirm.top_k with a score, and the
        leaderboard's best student (Board.best_student, exported to best_student/) is the first.
        Unreadable result.json files are passed over (the leaderboard reports them as corrupt)."""
        scored = []
        for cand in self.candidates():
            if not cand.has_result():
                continue
            try:
                value = (cand.read_result().objectives or {}).get(objective)
            except (OSError, ValueError):
                continue
            key = sort_key(objective, value)
            scored.append((key, cand.name, None if key == float("inf") else float(value)))
        return [(name, value) for _, name, value in sorted(scored)]

    def confirmation(self, name: str) -> ConfirmationDir:
        """The confirmation stage's row `name` (`paper_defaults` or a finalist's trial id)."""
        return ConfirmationDir(self.path / CONFIRMATION_DIR / name, "confirmation")

    @property
    def confirmation_plan_file(self) -> Path:
        """confirmation/plan.json: the confirmation stage's finalists (best first), distillation seeds and
        fine-tuning seeds as last started; the leaderboard reads only the rows of this plan."""
        return self.path / CONFIRMATION_DIR / "plan.json"

    def write_confirmation_plan(self, plan: dict) -> None:
        write_json(self.confirmation_plan_file, plan)

    def read_confirmation_plan(self) -> dict | None:
        """plan.json as a dict, or None when it is missing or unreadable (every confirmation row counts)."""
        try:
            plan = read_json(self.confirmation_plan_file)
        except (OSError, ValueError):
            return None
        return plan if isinstance(plan, dict) else None

    def confirmations(self) -> list[ConfirmationDir]:
        """Every confirmation row's dir that has a result.json, by name."""
        return [self.confirmation(p.parent.name) for p in sorted(self.path.glob(f"{CONFIRMATION_DIR}/*/result.json"))]

    def rows(self) -> Iterator[RowDir]:
        """The teacher (if it has a result), the reference rows with a result, then every candidate:
        the order the leaderboard reads them in."""
        if self.teacher().has_result():
            yield self.teacher()
        yield from self.references()
        yield from self.candidates()

    def finished_references(self) -> set[str]:
        """Names of the teacher and reference rows whose result.json exists (a resumed sweep skips them)."""
        return {r.name for r in [self.teacher(), *self.references()] if r.has_result()}

    def failed_trials(self) -> list[str]:
        """Trial ids whose status.json says `failed`, sorted."""
        return sorted(c.name for c in self.candidates() if c.has_status() and c.read_status().status == "failed")

    # -- other files
    @property
    def logs_dir(self) -> Path:
        return self.path / "logs"

    def live_file(self, run_name: str) -> Path:
        """What a Train run's rank 0 writes at each checkpoint (see the module function live_file)."""
        return live_file(self.logs_dir, run_name)

    @property
    def best_student_dir(self) -> Path:
        return self.path / "best_student"

    def optuna_url(self) -> str:
        """The default Optuna study storage: sqlite in the results dir."""
        return f"sqlite:///{self.path.resolve() / 'optuna.db'}"
