"""What every process of a sweep shares: the typed context passed across the Ray boundary, the
architecture profiles timed before the search, and the few facts about a model or the spec that
both the trials and the reference rows need."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass

from transformers import AutoConfig, AutoModel

from distil.config.layers import layer_key
from distil.config.spec import ProfileSpec, SweepSpec
from distil.config.tasks import Task
from distil.evaluation.profile import measure
from distil.science.student import count_parameters, save_student
from distil.search.train import DistillJob
from distil.store.records import ResultsDir


@dataclass(frozen=True)
class SweepContext:
    """What every trial and reference row needs, passed typed across the Ray boundary
    (tune.with_parameters, Ray task arguments)."""

    spec: SweepSpec
    out: str  # absolute results dir
    job: DistillJob  # teacher, corpus, distillation settings, Train storage
    n_layers: int  # student depth when it is not searched
    profiles: dict  # architecture key -> distil.evaluation.profile.measure() dict (see profile_architectures)
    provenance: dict  # spec hash, git commit, data and teacher hashes (distil.store.provenance)
    tasks: tuple[Task, ...] = ()  # what every model is fine-tuned on: GLUE's with data, the spec's own
    caches: dict | None = None  # task name -> its tokenised splits (distil.evaluation.finetune.prepare_task_data)
    verbose: bool = False  # workers print to the console instead of <out>/logs/workers.log

    @property
    def results(self) -> ResultsDir:
        return ResultsDir(self.out)

    @property
    def log(self) -> tuple[str, bool]:
        """(log dir, verbose) for distil.store.logs.to_log_file in every process of the sweep."""
        return str(self.results.logs_dir), self.verbose

    def profile(self, n_layers: int) -> dict | None:
        """The size and latency of a student of `n_layers` layers (None if it was not profiled)."""
        return self.profiles.get(student_arch(n_layers))


def student_arch(n_layers: int) -> str:
    """The key of a student architecture among the profiles (run.json's `profiles`): latency
    depends on shape, not weights."""
    return f"student-{n_layers}L"


def profile_architectures(teacher_source: str, teacher_dir: str, depths: list[int], seed: int, data: str,
                          timing: ProfileSpec = ProfileSpec()) -> dict:
    """Size and CPU latency of the teacher and of one student per depth, timed one after another
    before anything else is submitted to the cluster, so that nothing shares the cores. Every
    student of a depth has this profile: same shape, same cost (weights do not change latency).
    `timing`: the spec's `profile` section (input length, rounds, repeats).
    Returns {"teacher": measure(), student_arch(n): measure(), ...} (distil.evaluation.profile)."""
    settings = timing.model_dump()
    out = {"teacher": measure(teacher_source, "teacher", data=data, **settings)}
    with tempfile.TemporaryDirectory() as tmp:
        for n in sorted(set(depths)):
            save_student(teacher_dir, n, "first", seed, f"{tmp}/{n}")
            out[student_arch(n)] = measure(f"{tmp}/{n}", "student", data=data, **settings)
    return out


def encoder_parameters(model_dir: str) -> int:
    """Parameters of an encoder or decoder body as the leaderboard counts them for every row: word and
    position embeddings and the layers (GPT-2: and ln_f), without token-type embeddings, pooler or heads (a
    DistilBERT student has none of these, a RoBERTa student no pooler, so teacher and student counts
    compare like for like)."""
    pooled = AutoConfig.from_pretrained(model_dir).model_type in ("bert", "roberta")  # AutoModel adds a pooler
    model = AutoModel.from_pretrained(model_dir, **({"add_pooling_layer": False} if pooled else {}))
    token_type = getattr(getattr(model, "embeddings", None), "token_type_embeddings", None)
    return count_parameters(model) - (token_type.weight.numel() if token_type is not None else 0)


def paper_default_point(spec: SweepSpec) -> dict | None:
    """search.points_to_evaluate[0] (the paper's defaults, by convention) with its layer list as a
    canonical key, or None. It is run in full as the reference row `paper_defaults`, never as a trial."""
    return next(iter(spec.search.encoded_points()), None)


def paper_default_rule(spec: SweepSpec) -> str:
    """The layer-selection rule of the paper defaults (points_to_evaluate[0]), else the fixed rule,
    else the first searched choice."""
    point, sel = paper_default_point(spec) or {}, spec.search.layer_selection
    if "layer_selection" in point:
        return point["layer_selection"]
    return layer_key(sel.choices[0] if hasattr(sel, "choices") else sel)
