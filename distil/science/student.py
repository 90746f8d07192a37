"""Student construction: a student initialised from chosen layers of its teacher, by family
(distil.config.families): a DistilBERT from a BERT teacher, a RoBERTa from a RoBERTa, a GPT-2 from a GPT-2.

Sanh et al. 2019 (DistilBERT), section 3: the student keeps the teacher's hidden size, drops the
token-type embeddings and the pooler, halves the depth, and is initialised from the teacher by
taking one layer out of two. `distil.config.layers` names the rules; `build_student` copies weights.
DistilRoBERTa and DistilGPT2 are built the same way by the original code (HF research_projects/distillation
`scripts/extract.py`: embeddings, layers [0, 2, 4, 7, 9, 11] of 12, GPT-2's final layer norm, the LM head):
`copy_student` copies every parameter under its own name, layer i from teacher layer selected[i].

A student narrower than its teacher (`StudentShape`: hidden size, heads, FFN size) is initialised by
weight selection (Xu et al., "Initializing Models with Larger Ones", ICLR 2024, §3.2): the layers its
rule picks, and of each of their tensors (embeddings and LayerNorms included) the evenly spaced
rows and columns that fit the student (`select_elements`). At the teacher's own width that selects
every element: copying is weight selection at full width, one code path.
"""

from __future__ import annotations

import torch
from transformers import BertConfig, BertForMaskedLM, DistilBertConfig, DistilBertForMaskedLM, PreTrainedModel

from distil.config.families import Family
from distil.config.layers import LayerSelection, select_layers  # noqa: F401  (select_layers re-exported)
from distil.config.rules import resolve_shape, teacher_shape
from distil.config.settings import StudentShape
from distil.science.families import family_of_model, model_class, save_model


def student_config(teacher: BertConfig, n_layers: int, shape: StudentShape = StudentShape()) -> DistilBertConfig:
    """DistilBERT config with the teacher's vocabulary and activation, and its width, heads and FFN
    size unless `shape` sets them.

    Raises:
        SpecError (a ValueError): an impossible shape (distil.config.rules.resolve_shape).
    """
    shape = resolve_shape(shape, teacher_shape(teacher.to_dict()))
    return DistilBertConfig(
        vocab_size=teacher.vocab_size,
        max_position_embeddings=teacher.max_position_embeddings,
        sinusoidal_pos_embds=False,
        n_layers=n_layers,
        n_heads=shape.num_attention_heads,
        dim=shape.hidden_size,
        hidden_dim=shape.intermediate_size,
        dropout=teacher.hidden_dropout_prob,
        attention_dropout=teacher.attention_probs_dropout_prob,
        activation=teacher.hidden_act,
        initializer_range=teacher.initializer_range,
        pad_token_id=teacher.pad_token_id,
        tie_word_embeddings=True,
    )


# DistilBERT layer parameter name -> BERT layer parameter name (per layer, weight and bias).
_LAYER_MAP = {
    "attention.q_lin": "attention.self.query",
    "attention.k_lin": "attention.self.key",
    "attention.v_lin": "attention.self.value",
    "attention.out_lin": "attention.output.dense",
    "sa_layer_norm": "attention.output.LayerNorm",
    "ffn.lin1": "intermediate.dense",
    "ffn.lin2": "output.dense",
    "output_layer_norm": "output.LayerNorm",
}
_HEAD_MAP = {
    "vocab_transform": "cls.predictions.transform.dense",
    "vocab_layer_norm": "cls.predictions.transform.LayerNorm",
}


def evenly_spaced(n_teacher: int, n_student: int) -> list[int]:
    """`n_student` of `n_teacher` indices, evenly spaced: Xu et al. 2024's uniform element selection
    (§3.2; their weight_selection.py): every (n_teacher / n_student)-th from 0 when n_student divides
    n_teacher (384 -> 192: 0, 2, 4, ...), else round(i·(n_teacher - 1)/(n_student - 1)) with halves
    rounded up, both ends kept (6 -> 4: 0, 2, 3, 5). The same (n_teacher, n_student) always gives the
    same indices, so a dimension shared by many tensors (the hidden size) keeps the same elements in all.

    Raises:
        ValueError: n_student not in [1, n_teacher].
    """
    if not 1 <= n_student <= n_teacher:
        raise ValueError(f"cannot select {n_student} of {n_teacher} elements; the student must be at most as wide "
                         "as the teacher")
    if n_teacher % n_student == 0:
        return list(range(0, n_teacher, n_teacher // n_student))
    return [int(i * (n_teacher - 1) / (n_student - 1) + 0.5) for i in range(n_student)]


def select_elements(weight: torch.Tensor, shape: torch.Size | tuple[int, ...]) -> torch.Tensor:
    """The evenly spaced elements (`evenly_spaced`) of `weight` along every dimension that `shape` has
    fewer of: a (384, 1536) FFN weight to (192, 768) keeps rows 0, 2, ... and columns 0, 2, ...
    (Xu et al. 2024, §3.2). `weight` itself where the shapes agree (copying).

    Raises:
        ValueError: `shape` has another rank, or a dimension larger than `weight`'s.
    """
    if len(shape) != weight.dim():
        raise ValueError(f"cannot select a {tuple(shape)} tensor from a {tuple(weight.shape)} one")
    for dim, n in enumerate(shape):
        if weight.shape[dim] != n:
            index = torch.tensor(evenly_spaced(weight.shape[dim], n), device=weight.device)
            weight = weight.index_select(dim, index)
    return weight


def selection_projection(width: int, teacher_width: int) -> torch.Tensor:
    """The (teacher_width, width) matrix that puts student unit j at teacher unit
    evenly_spaced(teacher_width, width)[j] (weight 1, all else 0): the inverse of weight selection
    (Xu et al. 2024, §3.2; select_elements keeps those units of every tensor). The
    identity when the widths agree.

    Raises:
        ValueError: width not in [1, teacher_width] (evenly_spaced).
    """
    w = torch.zeros(teacher_width, width)
    w[torch.tensor(evenly_spaced(teacher_width, width)), torch.arange(width)] = 1.0
    return w


@torch.no_grad()
def build_student(teacher: BertForMaskedLM | PreTrainedModel, n_layers: int, selection: LayerSelection,
                  shape: StudentShape = StudentShape()) -> DistilBertForMaskedLM | PreTrainedModel:
    """The student of `teacher`'s family (distil.config.families): a `DistilBertForMaskedLM` from a BERT
    teacher, initialised from it (or randomly for `random_init`) as below; a RoBERTa or GPT-2 teacher
    gives a student of its own class (`copy_student`).

    Copies the word and position embeddings, the embedding LayerNorm, the selected encoder layers
    and the MLM head (transform, LayerNorm, output bias; the decoder is tied to the word
    embeddings). DistilBERT has no token-type embeddings: BERT adds token_type_embeddings[0] to
    every single-segment input, so we fold that row into the position embeddings. The student then
    reproduces the teacher exactly when every layer is kept (tests/test_student.py checks this).

    `shape` (default: the teacher's width) narrower than the teacher: each of those tensors is
    weight-selected instead of copied (`select_elements`: Xu et al. 2024, §3.2), the vocabulary and
    positions kept whole; `random_init` gives random weights of any shape.

    Raises:
        ValueError: a bad selection (distil.config.layers.select_layers) or shape
            (distil.config.rules.resolve_shape; wider than the teacher only with random_init); a
            narrower RoBERTa or GPT-2 student; SpecError (a ValueError) for a teacher outside the table.
    """
    family = family_of_model(teacher)
    if family.copies_by_name:
        return copy_student(teacher, family, n_layers, selection, shape)
    selected = select_layers(selection, teacher.config.num_hidden_layers, n_layers)
    if selected is not None:
        resolve_shape(shape, teacher_shape(teacher.config.to_dict()), from_teacher=True)
    student = DistilBertForMaskedLM(student_config(teacher.config, n_layers, shape))
    if selected is None:
        return student
    t = teacher.state_dict()
    s = student.state_dict()

    def put(dst: str, value: torch.Tensor) -> None:
        s[dst].copy_(select_elements(value, s[dst].shape))

    put("distilbert.embeddings.word_embeddings.weight", t["bert.embeddings.word_embeddings.weight"])
    put("distilbert.embeddings.position_embeddings.weight",
        t["bert.embeddings.position_embeddings.weight"] + t["bert.embeddings.token_type_embeddings.weight"][0])
    for p in ("weight", "bias"):
        put(f"distilbert.embeddings.LayerNorm.{p}", t[f"bert.embeddings.LayerNorm.{p}"])
        for i, j in enumerate(selected):
            for dst, src in _LAYER_MAP.items():
                put(f"distilbert.transformer.layer.{i}.{dst}.{p}", t[f"bert.encoder.layer.{j}.{src}.{p}"])
        for dst, src in _HEAD_MAP.items():
            put(f"{dst}.{p}", t[f"{src}.{p}"])
    put("vocab_projector.bias", t["cls.predictions.bias"])
    student.load_state_dict(s)
    student.tie_weights()
    return student


def family_student_config(teacher_config, family: Family, n_layers: int):
    """The teacher's config with `n_layers` layers, the family's student overrides (RoBERTa: one token
    type) and the LM head tied to the word embeddings; everything else (width, vocabulary, positions,
    RoBERTa's pad id and so its position offset, dropout, activation) as the teacher's."""
    values = teacher_config.to_dict() | {family.depth_key: n_layers, "tie_word_embeddings": True}
    return type(teacher_config).from_dict(values | dict(family.student_config))


def _teacher_key(key: str, family: Family, selected: list[int]) -> str:
    """The teacher parameter a student parameter of a same-class family is copied from.

    Raises:
        ValueError: a parameter that is neither a layer's nor one the family's row keeps.
    """
    for i, j in enumerate(selected):
        prefix = family.student_layers.format(i) + "."
        if key.startswith(prefix):
            return family.teacher_layers.format(j) + "." + key[len(prefix):]
    kept = (*family.embeddings, *([family.final_norm] if family.final_norm else []), family.head)
    if key.startswith(tuple(p + "." for p in kept)):
        return key
    raise ValueError(f"{family.model_type} student parameter {key} has no rule in the family table")


@torch.no_grad()
def copy_student(teacher: PreTrainedModel, family: Family, n_layers: int, selection: LayerSelection,
                 shape: StudentShape = StudentShape()) -> PreTrainedModel:
    """A student of the teacher's own class (RoBERTa, GPT-2) with `n_layers` layers: the embeddings
    (RoBERTa: word, position and LayerNorm, token type row 0; GPT-2: wte, wpe), student layer i = teacher
    layer selected[i] parameter for parameter, GPT-2's final layer norm ln_f, and the LM head (RoBERTa:
    dense, layer_norm, bias; GPT-2's lm_head is the tied wte) copied; random weights for `random_init`.
    With every layer kept the student is the teacher (tests/test_families.py).

    RoBERTa with type_vocab_size > 1: the student keeps row 0, the type every single-segment input gets.

    Raises:
        ValueError: a bad selection (distil.config.layers.select_layers); a `shape` other than the
            teacher's width (weight selection of narrower students is BERT's only: GPT-2's fused
            query/key/value matrix would need its own rule); a parameter the row does not cover.
    """
    c = teacher.config  # hidden_size and num_attention_heads are GPT-2's n_embd and n_head too (attribute_map)
    width = (c.hidden_size, c.num_attention_heads,
             getattr(c, "intermediate_size", None) or getattr(c, "n_inner", None) or 4 * c.hidden_size)
    if any(mine is not None and mine != theirs for mine, theirs in zip(
            (shape.hidden_size, shape.num_attention_heads, shape.intermediate_size), width)):
        raise ValueError(f"student width {shape}: narrower students are built from BERT teachers only; a "
                         f"{family.model_type} student keeps the teacher's width {width}")
    selected = select_layers(selection, getattr(teacher.config, family.depth_key), n_layers)
    student = model_class(family.student_class)(family_student_config(teacher.config, family, n_layers))
    if selected is None:
        return student
    t, s = teacher.state_dict(), student.state_dict()
    for key, value in s.items():
        src = t[_teacher_key(key, family, selected)]
        if src.shape != value.shape and key.endswith("token_type_embeddings.weight"):
            src = src[: value.shape[0]]
        value.copy_(src)
    student.load_state_dict(s)
    student.tie_weights()
    return student


def count_parameters(model: torch.nn.Module) -> int:
    """Distinct parameters (tied weights counted once)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


def save_student(teacher_dir: str, n_layers: int, selection: LayerSelection, seed: int, out_dir: str,
                 shape: StudentShape = StudentShape()) -> int:
    """Build a student (of `shape`, default the teacher's width) from the teacher in `teacher_dir` (a BERT
    with its MLM head, loaded as BertForMaskedLM; a RoBERTa or GPT-2 as its family's teacher class), save
    it with the teacher's tokenizer as a Hugging Face dir; `seed` fixes the random weights (all of them for
    `random_init`). Returns the parameter count of the student's body (`base_model`: no LM head).

    Raises:
        SpecError (a ValueError): a teacher outside distil.config.families' table.
    """
    from transformers import AutoConfig, AutoTokenizer

    from distil.config.families import family_of

    family = family_of(AutoConfig.from_pretrained(teacher_dir).model_type)
    torch.manual_seed(seed)
    teacher = model_class(family.teacher_class).from_pretrained(teacher_dir)
    student = build_student(teacher, n_layers, selection, shape)
    save_model(student, AutoTokenizer.from_pretrained(teacher_dir), out_dir)  # GPT-2: with a pad token
    return count_parameters(student.base_model)
