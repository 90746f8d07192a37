"""The rules that the checks before a run (distil.preflight, distil.cli) and the run itself
(distil.science) must apply alike, one function each, so that a check cannot drift from what it checks:

* which refs are local paths: `is_local`; which model a teacher ref names: `resolve_teacher`,
  `local_teacher`, and its `teacher_config`;
* the teacher's family is one a sweep runs: `sweep_family`; the loss terms apply to it: `check_family_terms`;
  the spec evaluates it as its family is evaluated (GLUE, or perplexity): `check_family_evaluation`;
* the student's depths, layer selections and layer map fit the teacher: `student_depth`;
* the student's width fits the teacher and the loss terms: `teacher_shape`, `resolve_shape`,
  `check_layer_terms`, and for a whole spec `student_shapes`; the width a sweep's candidates and reference
  rows are built at: `sweep_shape`;
* which text a corpus split is read from and how it is cut into training sequences: `corpus_split_file`,
  `corpus_pieces`, `check_max_seq_len` (with GLUE's and the latency profile's lengths: `check_seq_lens`), and how
  many sequences a sweep needs: `train_sequences_needed`.

No torch and no transformers here (a teacher's config.json is read as JSON), so a bad input fails in
well under a second.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
from pathlib import Path

from distil.config.families import CLM, FAMILIES, Family
from distil.config.layers import parse_layer_key, select_layers
from distil.config.settings import StudentShape
from distil.config.spec import Choice, CorpusSpec, DistillSpec, ProxySpec, SpecError, SweepSpec

MIN_TRAIN_SEQUENCES = 16  # fewest training sequences a corpus may give (distil.science.data.prepare_corpus)


def is_local(ref: str) -> bool:
    """Whether a validated spec's ref (teacher.model once resolved, corpus.path, glue.data) is a local
    path: load_spec makes every local one absolute, so anything else is a hub id."""
    return os.path.isabs(ref)


# ---------------------------------------------------------------- teacher
def resolve_teacher(ref: str) -> str:
    """The local dir or hub id that teacher ref `ref` (spec teacher.model) names: `package:<module>`
    -> the installed module's `model/` dir; anything else as is (load_spec has made a local path
    absolute; a resumed spec.json keeps that path even if the dir has gone since).

    Raises:
        SpecError (a ValueError): the package is not installed.
    """
    if not ref.startswith("package:"):
        return ref
    module = ref.removeprefix("package:")
    found = importlib.util.find_spec(module)
    if found is None or not found.submodule_search_locations:
        raise SpecError(f"teacher.model: package {module!r} is not installed; pip install {module.replace('_', '-')}")
    return str(Path(found.submodule_search_locations[0]) / "model")


def local_teacher(ref: str) -> str | None:
    """The local dir of teacher ref `ref` (absolute, see resolve_teacher), None for a hub id.
    Raises SpecError: a `package:` that is not installed."""
    source = resolve_teacher(ref)
    return source if is_local(source) else None


def teacher_config(teacher_dir: str | os.PathLike) -> dict:
    """The teacher's `config.json` (a local dir's) as a dict; what transformers' AutoConfig reads.

    Raises:
        OSError: no readable config.json (FileNotFoundError if there is none).
        ValueError: it is not JSON (json.JSONDecodeError).
    """
    config = json.loads((Path(teacher_dir) / "config.json").read_text())
    return config if isinstance(config, dict) else {}


def sweep_family(config: dict, where: str) -> Family:
    """The family of the teacher of `config` (its config.json), after checking that a sweep runs it: every row
    of the family table (distil.config.families): BERT and RoBERTa (masked LMs, evaluated on GLUE and the spec's
    own tasks) and GPT-2 (a causal LM, evaluated by perplexity: `check_family_evaluation`).

    Raises:
        SpecError: one line starting with `where` (`teacher.model: REF`) naming the model types a sweep takes.
    """
    model_type = config.get("model_type")
    family = FAMILIES.get(model_type)
    if family is None:
        supported = ", ".join(repr(m) for m in FAMILIES)
        raise SpecError(f"{where} is a {model_type!r} model; sweeps take {supported} teachers only "
                        "(config.json model_type, e.g. bert-base-uncased, roberta-base, gpt2)")
    return family


def check_family_evaluation(spec: SweepSpec, family: Family) -> None:
    """The spec evaluates the teacher's `family` the way the family table says (Family.evaluation): a masked LM
    on GLUE and the spec's own tasks (no lm_eval: a masked LM has no next-token perplexity); a causal LM by
    perplexity (lm_eval required) and nothing else a sweep does not wire for it yet: GLUE or own-task
    fine-tuning (sequence classification on the last token), task-specific distillation and the confirmation
    stage (GLUE reruns). A causal LM's early stopping scores held-out perplexity (ProxySpec), so the GLUE
    proxy's fields (search.early_stopping.proxy) must keep their defaults.

    Raises:
        SpecError: one line naming the field and the fix.
    """
    if family.objective != CLM:
        if spec.lm_eval is not None:
            raise SpecError(f"lm_eval: perplexity scores causal LMs, and a {family.model_type} teacher is a masked LM "
                            "(evaluated on GLUE and tasks); remove lm_eval")
        return
    where = f"a {family.model_type} teacher is a causal LM, scored by perplexity"
    if spec.lm_eval is None:
        raise SpecError(f"lm_eval: {where}, and the spec has no lm_eval; add lm_eval: {{data: "
                        "../shared/data/corpus/wikitext-2-raw-v1, window: 1024, stride: 512}")
    if spec.glue.tasks != [] or spec.tasks:
        field = "tasks" if spec.tasks else "glue.tasks"
        raise SpecError(f"{field}: {where}; GLUE and own-task fine-tuning of a {family.model_type} student is not "
                        "wired (lm_eval scores it); set glue.tasks: [] and drop tasks")
    es = spec.search.early_stopping
    if es is not None and es.proxy != ProxySpec():
        field = next(k for k in ProxySpec.model_fields if getattr(es.proxy, k) != getattr(ProxySpec(), k))
        raise SpecError(f"search.early_stopping.proxy.{field}: {where}, and its early-stopping proxy is the "
                        "perplexity on the corpus' held-out eval split (teacher.head_fit.eval_sequences sequences), "
                        "not GLUE fine-tuning; drop search.early_stopping.proxy")
    for field, value, why in (("search.confirm", spec.search.confirm, "its reruns are scored on GLUE"),
                              ("task_distill", spec.task_distill, "it distils GLUE tasks")):
        if value is not None:
            raise SpecError(f"{field}: {where}, and {why}; drop {field} for a {family.model_type} teacher")


def check_family_terms(spec: SweepSpec, family: Family) -> None:
    """The loss terms that can be positive apply to the teacher's `family`: alpha_mlm to a masked LM,
    alpha_clm to a causal one (distil.config.families: its objective), the layer-wise terms (alpha_hidden,
    alpha_attn, alpha_relation) to a BERT teacher's DistilBERT student only.

    Raises:
        SpecError: one line naming the `search.` field and the fix.
    """
    lm, other = ("alpha_clm", "alpha_mlm") if family.objective == CLM else ("alpha_mlm", "alpha_clm")
    kind = "causal" if family.objective == CLM else "masked"
    if spec.search.can_be_positive(other):
        raise SpecError(f"search.{other}: a {family.model_type} teacher is a {kind} LM, trained with {lm}; "
                        f"set {other} to 0 (and give {lm} the weight)")
    if family.model_type != "bert":
        layer = [n for n in ("alpha_hidden", "alpha_attn", "alpha_relation") if spec.search.can_be_positive(n)]
        if layer:
            raise SpecError(f"search.{layer[0]}: the layer-wise terms are built for DistilBERT students (a BERT "
                            f"teacher's); a {family.model_type} student takes alpha_ce, {lm}, alpha_cos and "
                            f"alpha_mse; set {layer[0]} to 0")


def student_depth(spec: SweepSpec, teacher_layers: int) -> int:
    """The student depth of a candidate whose depth is not searched: student.n_layers (the first
    choice if searched), else teacher_layers // 2 (DistilBERT's halving); after checking that every
    layer selection of the spec (search.layer_selection, each choice; task_distill.layer_selection)
    and the layer map of the layer-wise loss terms (search.layer_map) give every student depth
    distinct teacher layers (distil.config.layers.select_layers), and that search.relation_layer
    (each choice) is a layer of the teacher.

    Raises:
        SpecError: naming the field, e.g. `search.layer_selection: student.n_layers=8 must be between 1 and ...`.
    """
    depths = spec.student.depths() or [teacher_layers // 2]
    sels = spec.search.layer_selection
    checks = [("search.layer_selection", s) for s in (sels.choices if isinstance(sels, Choice) else [sels])]
    checks += [("task_distill.layer_selection", spec.task_distill.layer_selection)] if spec.task_distill else []
    checks += [("search.layer_map", spec.search.layer_map)]
    for field, s in checks:
        for n in depths:
            try:
                select_layers(parse_layer_key(s) if isinstance(s, str) else s, teacher_layers, n)
            except ValueError as e:
                raise SpecError(f"{field}: {e}") from None
    layer = spec.search.relation_layer
    for j in layer.choices if isinstance(layer, Choice) else [layer]:
        if not -teacher_layers <= j < teacher_layers:
            raise SpecError(f"search.relation_layer: {j} is not a layer of the {teacher_layers}-layer teacher; use "
                            f"0..{teacher_layers - 1} (or -1 for its last, as MiniLMv2 takes for base-size teachers)")
    return depths[0]


# ---------------------------------------------------------------- student width
SHAPE_FIELDS = {"hidden_size": 768, "num_attention_heads": 12, "intermediate_size": 3072}  # BertConfig's defaults


def teacher_shape(config: dict) -> StudentShape:
    """The width of the teacher of `config` (its config.json, or BertConfig.to_dict()), every field set."""
    return StudentShape(**{k: config.get(k, default) for k, default in SHAPE_FIELDS.items()})


def resolve_shape(shape: StudentShape, teacher: StudentShape, from_teacher: bool = False) -> StudentShape:
    """`shape` with every unset field taken from `teacher` (a resolved shape), checked: the hidden size
    splits into the heads, and a student initialised from the teacher's weights (`from_teacher`: any
    layer rule but random_init; weight selection takes evenly spaced rows of the teacher's tensors) has
    no more hidden or FFN units than the teacher (any head count that divides its width will do).

    Raises:
        SpecError: one line naming the `student.` field and the fix.
    """
    s = StudentShape(**{k: getattr(shape, k) or getattr(teacher, k) for k in SHAPE_FIELDS})
    if s.hidden_size % s.num_attention_heads:
        raise SpecError(f"student.hidden_size: {s.hidden_size} does not split into {s.num_attention_heads} attention "
                        f"heads; use a multiple of {s.num_attention_heads} or set student.num_attention_heads to a "
                        f"divisor of {s.hidden_size}")
    if from_teacher:
        for k in ("hidden_size", "intermediate_size"):  # the head count shapes no tensor
            if getattr(s, k) > getattr(teacher, k):
                raise SpecError(f"student.{k}: {getattr(s, k)} is more than the teacher's {getattr(teacher, k)}; "
                                "weight selection takes a subset of the teacher's weights, so use at most that, or "
                                "search.layer_selection random_init")
    return s


def check_layer_terms(student: StudentShape, teacher: StudentShape, attn: bool, relation_heads: int | None) -> None:
    """The layer-wise loss terms fit the two (resolved) shapes: `attn` (alpha_attn can be > 0) needs the
    teacher's head count (TinyBERT eq. 7 compares attention scores head by head); `relation_heads`
    (None: alpha_relation is 0) must divide both hidden sizes (MiniLMv2 §3 splits the concatenated
    heads into that many relation heads).

    Raises:
        SpecError: one line naming the field and the fix.
    """
    if attn and student.num_attention_heads != teacher.num_attention_heads:
        raise SpecError(f"student.num_attention_heads: {student.num_attention_heads} heads, the teacher has "
                        f"{teacher.num_attention_heads}, and search.alpha_attn compares attention scores head by "
                        f"head (TinyBERT eq. 7); use {teacher.num_attention_heads} heads or set alpha_attn to 0 "
                        "(alpha_relation works across head counts)")
    if relation_heads is not None:
        widths = (student.hidden_size, teacher.hidden_size)
        if any(w % relation_heads for w in widths):
            common = math.gcd(*widths)
            fit = max(d for d in range(1, min(relation_heads, common) + 1) if common % d == 0)
            raise SpecError(f"search.relation_heads: {relation_heads} does not divide both hidden sizes (student "
                            f"{widths[0]}, teacher {widths[1]}); use a common divisor, e.g. {fit}")


def student_shapes(spec: SweepSpec, config: dict) -> list[StudentShape]:
    """Every width of the spec's students (student.hidden_size, num_attention_heads, intermediate_size: one
    value or choices, each combination a shape; unset: the teacher's) against the teacher of `config` (its
    config.json), resolved, after `resolve_shape` (wider than the teacher only if every
    search.layer_selection choice is random_init), `check_layer_terms` (for the terms whose alpha can be
    > 0: alpha_attn with every head count a choice allows), and that another width than the teacher's has
    a BERT teacher (RoBERTa and GPT-2 students copy their teacher's width).

    Raises:
        SpecError: one line naming the field and the fix.
    """
    teacher = teacher_shape(config)
    model_type = config.get("model_type", "bert")
    sels = spec.search.layer_selection
    from_teacher = any(s != "random_init" for s in (sels.choices if isinstance(sels, Choice) else [sels]))
    relation = spec.search.relation_heads if spec.search.can_be_positive("alpha_relation") else None
    out = []
    for given in spec.student.shapes():
        if model_type != "bert" and sweep_shape(given, teacher).given():
            field, value = next((k, v) for k, v in given.given().items() if v != getattr(teacher, k))
            raise SpecError(f"student.{field}: {value} is not the {model_type} teacher's, and only a BERT teacher's "
                            "(DistilBERT) student is built narrower (weight selection); leave student.hidden_size, "
                            "num_attention_heads and intermediate_size out")
        shape = resolve_shape(given, teacher, from_teacher)
        check_layer_terms(shape, teacher, spec.search.can_be_positive("alpha_attn"), relation)
        out.append(shape)
    return out


def student_shape(spec: SweepSpec, config: dict) -> StudentShape:
    """The first of `student_shapes` (the only one unless the width is searched). Raises SpecError."""
    return student_shapes(spec, config)[0]


def sweep_shape(shape: StudentShape, teacher: StudentShape) -> StudentShape:
    """The width a sweep's student of `shape` (a spec's, unset fields: the teacher's) is built and named
    at: StudentShape() (nothing given) when it resolves to the teacher's own width `teacher`, so that a
    teacher-width sweep keeps its params, row names and profile keys; else the resolved shape, every
    field set (distil.store.records.shape_key names it). An empty `teacher` (not known) returns `shape`.

    Raises:
        SpecError: the shape cannot work (resolve_shape).
    """
    if not teacher.given():
        return shape
    s = resolve_shape(shape, teacher)
    return StudentShape() if s == teacher else s


# ---------------------------------------------------------------- corpus
def corpus_split_file(corpus: CorpusSpec, split: str) -> Path:
    """The parquet file a local corpus (corpus.path a dir) keeps split `split` in: `<path>/<split>.parquet`."""
    return Path(corpus.path) / f"{split}.parquet"


def corpus_pieces(n_tokens: int, max_seq_len: int, min_tokens: int) -> list[tuple[int, int]]:
    """[start, end) of the training sequences cut from a text of `n_tokens` tokens (no special tokens):
    pieces of max_seq_len - 2 tokens (room for [CLS] and [SEP]) from the start, those shorter than
    min_tokens (titles, headings, tails) dropped. 300 tokens, 128, 12 -> [(0, 126), (126, 252), (252, 300)]."""
    body = max_seq_len - 2
    return [(start, min(start + body, n_tokens)) for start in range(0, n_tokens, body)
            if min(start + body, n_tokens) - start >= min_tokens]


def check_max_seq_len(corpus: CorpusSpec, family: Family, config: dict) -> None:
    """corpus.max_seq_len fits the positions of the teacher of `config` (its config.json), `family`'s
    (Family.max_seq_len: RoBERTa's start after its pad id).

    Raises:
        SpecError: one line naming corpus.max_seq_len and the most the teacher takes.
    """
    _fits_positions("corpus.max_seq_len", corpus.max_seq_len, family, config)


def check_seq_lens(spec: SweepSpec, family: Family, config: dict) -> None:
    """Every sequence length a sweep feeds the teacher and its students fits their positions: the corpus's
    (check_max_seq_len), GLUE fine-tuning's (glue.max_seq_len: the spec's own tasks too; only with tasks to
    fine-tune on), the perplexity window's (lm_eval.window) and the latency profile's (profile.seq_len).
    Raises SpecError: one line naming the field and the most the teacher takes."""
    check_max_seq_len(spec.corpus, family, config)
    if spec.glue.tasks != [] or spec.tasks:
        _fits_positions("glue.max_seq_len", spec.glue.max_seq_len, family, config)
    if spec.lm_eval is not None:
        _fits_positions("lm_eval.window", spec.lm_eval.window, family, config)
    _fits_positions("profile.seq_len", spec.profile.seq_len, family, config)


def _fits_positions(field: str, n: int, family: Family, config: dict) -> None:
    most = family.max_seq_len(config)
    if n > most:
        key, pad = family.positions_key, config.get("pad_token_id", 1)
        why = (f"{key} {config.get(key)} - pad id {pad} - 1: its positions start after the pad id"
               if family.positions_after_pad else f"{key} {most}")
        raise SpecError(f"{field}: {n} tokens, and this {family.model_type} teacher takes "
                        f"at most {most} ({why}); use at most {most}")


def train_sequences_needed(distill: DistillSpec) -> int:
    """Fewest training sequences a corpus must give: one micro-batch per worker (distill.batch_size ×
    num_workers), and MIN_TRAIN_SEQUENCES at least."""
    return max(MIN_TRAIN_SEQUENCES, distill.batch_size * distill.num_workers)
