"""What every process of a sweep shares: the typed context passed across the Ray boundary, the
architecture profiles timed before the search, and the few facts about a model or the spec that
both the trials and the reference rows need."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, replace

from transformers import AutoConfig, AutoModel

from distil.config.layers import layer_key
from distil.config.rules import sweep_shape
from distil.config.settings import StudentShape
from distil.config.spec import ProfileSpec, SweepSpec
from distil.config.tasks import Task
from distil.evaluation.profile import measure
from distil.science.student import count_parameters, save_student
from distil.search.train import CandidateParams, DistillJob
from distil.store.records import ResultsDir, shape_key


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
    # The teacher's width (distil.config.rules.teacher_shape); empty: not known, every shape taken as given.
    teacher_shape: StudentShape = StudentShape()

    @property
    def results(self) -> ResultsDir:
        return ResultsDir(self.out)

    @property
    def shapes(self) -> list[StudentShape]:
        """Every width the spec's students can have (one unless student.hidden_size, num_attention_heads
        or intermediate_size is searched), as they are built and named (distil.config.rules.sweep_shape):
        StudentShape() at the teacher's width, else every field set. The reference rows exist per shape."""
        return list(dict.fromkeys(sweep_shape(s, self.teacher_shape) for s in self.spec.student.shapes()))

    @property
    def shape(self) -> StudentShape:
        """The first of `shapes`: the width of every student when it is not searched."""
        return self.shapes[0]

    def key(self, n_layers: int, shape: StudentShape | None = None) -> str:
        """The shape part of the name of a reference row of `n_layers` layers and width `shape` (default
        `self.shape`): '' at the teacher's width (distil.store.records.shape_key)."""
        return shape_key(n_layers, **(self.shape if shape is None else shape).given())

    def params(self, values: dict) -> CandidateParams:
        """A candidate's (or a distilled reference row's) parameters from `values` (a trial's searched
        config, a fixed point) over the spec's fixed values, the depth when it is not searched and the
        spec's width; the width as sweep_shape builds it (none at the teacher's)."""
        params = CandidateParams.from_values({**self.spec.search.fixed(), "n_layers": self.n_layers,
                                              **self.spec.student.shape().given(), **values})
        return replace(params, shape=sweep_shape(params.shape, self.teacher_shape))

    @property
    def log(self) -> tuple[str, bool]:
        """(log dir, verbose) for distil.store.logs.to_log_file in every process of the sweep."""
        return str(self.results.logs_dir), self.verbose

    def profile(self, n_layers: int, shape: StudentShape | None = None) -> dict | None:
        """The size and latency of a student of `n_layers` layers and width `shape` (default `self.shape`)
        (None if it was not profiled)."""
        return self.profiles.get(student_arch(n_layers, self.shape if shape is None else shape))


def student_arch(n_layers: int, shape: StudentShape = StudentShape()) -> str:
    """The key of a student architecture among the profiles (run.json's `profiles`): latency
    depends on shape, not weights. `student-<n>L` at the teacher's width (shape StudentShape()),
    `student-<n>L<hidden>H<heads>F<ffn>` at another (distil.store.records.shape_key)."""
    return f"student-{shape_key(n_layers, **shape.given()) or f'{n_layers}L'}"


def profile_architectures(teacher_source: str, teacher_dir: str, depths: list[int], seed: int, data: str,
                          timing: ProfileSpec = ProfileSpec(), shapes: list[StudentShape] = (StudentShape(),)) -> dict:
    """Size and CPU latency of the teacher and of one student per depth and width (`shapes`, each as
    distil.config.rules.sweep_shape gives it: StudentShape() is the teacher's width), timed one after
    another before anything else is submitted to the cluster, so that nothing shares the cores. Every
    student of a depth and width has this profile: same shape, same cost (weights do not change latency).
    `timing`: the spec's `profile` section (input length, rounds, repeats).
    Returns {"teacher": measure(), student_arch(n, shape): measure(), ...} (distil.evaluation.profile)."""
    settings = timing.model_dump()
    out = {"teacher": measure(teacher_source, "teacher", data=data, **settings)}
    with tempfile.TemporaryDirectory() as tmp:
        for n in sorted(set(depths)):
            for shape in dict.fromkeys(shapes):
                arch = student_arch(n, shape)
                # Random weights at another width: latency does not depend on them, and a shape wider
                # than the teacher (random_init sweeps) has no teacher weights to select.
                save_student(teacher_dir, n, "random_init" if shape.given() else "first", seed, f"{tmp}/{arch}", shape)
                out[arch] = measure(f"{tmp}/{arch}", "student", data=data, **settings)
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
