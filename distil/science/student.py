"""Student construction: a DistilBERT initialised from chosen layers of a BERT teacher.

Sanh et al. 2019 (DistilBERT), section 3: the student keeps the teacher's hidden size, drops the
token-type embeddings and the pooler, halves the depth, and is initialised from the teacher by
taking one layer out of two. `distil.config.layers` names the rules; `build_student` copies weights.

A student narrower than its teacher (`StudentShape`: hidden size, heads, FFN size) is initialised by
weight selection (Xu et al., "Initializing Models with Larger Ones", ICLR 2024, §3.2): the layers its
rule picks, and of each of their tensors (embeddings and LayerNorms included) the evenly spaced
rows and columns that fit the student (`select_elements`). At the teacher's own width that selects
every element: copying is weight selection at full width, one code path.
"""

from __future__ import annotations

import torch
from transformers import BertConfig, BertForMaskedLM, DistilBertConfig, DistilBertForMaskedLM

from distil.config.layers import LayerSelection, select_layers  # noqa: F401  (select_layers re-exported)
from distil.config.rules import resolve_shape, teacher_shape
from distil.config.settings import StudentShape


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


@torch.no_grad()
def build_student(teacher: BertForMaskedLM, n_layers: int, selection: LayerSelection,
                  shape: StudentShape = StudentShape()) -> DistilBertForMaskedLM:
    """A `DistilBertForMaskedLM` initialised from `teacher` (or randomly for `random_init`).

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
            (distil.config.rules.resolve_shape; wider than the teacher only with random_init).
    """
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


def count_parameters(model: torch.nn.Module) -> int:
    """Distinct parameters (tied weights counted once)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


def save_student(teacher_dir: str, n_layers: int, selection: LayerSelection, seed: int, out_dir: str,
                 shape: StudentShape = StudentShape()) -> int:
    """Build a student (of `shape`, default the teacher's width) from the (MLM-headed) teacher in
    `teacher_dir`, save it with the teacher's tokenizer as a Hugging Face dir; `seed` fixes the random
    weights (all of them for `random_init`). Returns the encoder's parameter count."""
    from transformers import AutoTokenizer

    torch.manual_seed(seed)
    student = build_student(BertForMaskedLM.from_pretrained(teacher_dir), n_layers, selection, shape)
    student.save_pretrained(out_dir)
    AutoTokenizer.from_pretrained(teacher_dir).save_pretrained(out_dir)
    return count_parameters(student.distilbert)
