"""Student construction: a DistilBERT initialised from chosen layers of a BERT teacher.

Sanh et al. 2019 (DistilBERT), section 3: the student keeps the teacher's hidden size, drops the
token-type embeddings and the pooler, halves the depth, and is initialised from the teacher by
taking one layer out of two. `select_layers` names the rules; `build_student` copies weights.
"""

from __future__ import annotations

import torch
from transformers import BertConfig, BertForMaskedLM, DistilBertConfig, DistilBertForMaskedLM

from distil.spec import LayerSelection


def select_layers(rule: LayerSelection, n_teacher: int, n_student: int) -> list[int] | None:
    """Teacher layer indices (0-based) that initialise student layers 0..n_student-1.

    Rules, for a teacher of depth L and a student of depth n:
      * `distilbert`: evenly spread with both ends kept, round(i·(L-1)/(n-1));
        12→6 gives [0, 2, 4, 7, 9, 11], the paper's choice.
      * `every_other`: one in L/n starting at the bottom, round(i·L/n); 12→6 gives [0, 2, ..., 10].
      * `uniform`: the top layer of each of n equal blocks, round((i+1)·L/n)-1 (TinyBERT's
        uniform mapping, Jiao et al. 2020, §3.3); 12→6 gives [1, 3, ..., 11].
      * `first` / `last`: the bottom / top n layers.
      * an explicit list: used as is.
      * `random_init`: returns None (no teacher weights at all: the no-distillation-init baseline).

    Raises:
        ValueError: n_student > n_teacher, or an explicit list of the wrong length, with
            duplicates or out-of-range indices.
    """
    if not 1 <= n_student <= n_teacher:
        raise ValueError(f"student.n_layers={n_student} must be between 1 and the teacher's {n_teacher} layers")
    L, n = n_teacher, n_student
    if isinstance(rule, list):
        if len(rule) != n or len(set(rule)) != n or not all(0 <= i < L for i in rule):
            raise ValueError(
                f"layer_selection {rule}: need {n} distinct teacher layer indices in [0, {L - 1}]"
            )
        return list(rule)
    rules = {
        "distilbert": lambda: [round(i * (L - 1) / (n - 1)) for i in range(n)] if n > 1 else [0],
        "every_other": lambda: [round(i * L / n) for i in range(n)],
        "uniform": lambda: [round((i + 1) * L / n) - 1 for i in range(n)],
        "first": lambda: list(range(n)),
        "last": lambda: list(range(L - n, L)),
        "random_init": lambda: None,
    }
    if rule not in rules:
        raise ValueError(f"unknown layer_selection {rule!r}; use one of {sorted(rules)} or a list")
    return rules[rule]()


def student_config(teacher: BertConfig, n_layers: int) -> DistilBertConfig:
    """DistilBERT config with the teacher's width, heads, FFN size, vocabulary and activation."""
    return DistilBertConfig(
        vocab_size=teacher.vocab_size,
        max_position_embeddings=teacher.max_position_embeddings,
        sinusoidal_pos_embds=False,
        n_layers=n_layers,
        n_heads=teacher.num_attention_heads,
        dim=teacher.hidden_size,
        hidden_dim=teacher.intermediate_size,
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


@torch.no_grad()
def build_student(teacher: BertForMaskedLM, n_layers: int, selection: LayerSelection) -> DistilBertForMaskedLM:
    """A `DistilBertForMaskedLM` initialised from `teacher` (or randomly for `random_init`).

    Copies the word and position embeddings, the embedding LayerNorm, the selected encoder layers
    and the MLM head (transform, LayerNorm, output bias; the decoder is tied to the word
    embeddings). DistilBERT has no token-type embeddings: BERT adds token_type_embeddings[0] to
    every single-segment input, so we fold that row into the position embeddings. The student then
    reproduces the teacher exactly when every layer is kept (tests/test_student.py checks this).
    """
    selected = select_layers(selection, teacher.config.num_hidden_layers, n_layers)
    student = DistilBertForMaskedLM(student_config(teacher.config, n_layers))
    if selected is None:
        return student
    t = teacher.state_dict()
    s = student.state_dict()
    s["distilbert.embeddings.word_embeddings.weight"].copy_(t["bert.embeddings.word_embeddings.weight"])
    s["distilbert.embeddings.position_embeddings.weight"].copy_(
        t["bert.embeddings.position_embeddings.weight"] + t["bert.embeddings.token_type_embeddings.weight"][0]
    )
    for p in ("weight", "bias"):
        s[f"distilbert.embeddings.LayerNorm.{p}"].copy_(t[f"bert.embeddings.LayerNorm.{p}"])
        for i, j in enumerate(selected):
            for dst, src in _LAYER_MAP.items():
                s[f"distilbert.transformer.layer.{i}.{dst}.{p}"].copy_(t[f"bert.encoder.layer.{j}.{src}.{p}"])
        for dst, src in _HEAD_MAP.items():
            s[f"{dst}.{p}"].copy_(t[f"{src}.{p}"])
    s["vocab_projector.bias"].copy_(t["cls.predictions.bias"])
    student.load_state_dict(s)
    student.tie_weights()
    return student


def count_parameters(model: torch.nn.Module) -> int:
    """Distinct parameters (tied weights counted once)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


def save_student(teacher_dir: str, n_layers: int, selection: LayerSelection, seed: int, out_dir: str) -> int:
    """Build a student from the (MLM-headed) teacher in `teacher_dir`, save it with the teacher's
    tokenizer as a Hugging Face dir; `seed` fixes the random weights (all of them for
    `random_init`). Returns the encoder's parameter count."""
    from transformers import AutoTokenizer

    torch.manual_seed(seed)
    student = build_student(BertForMaskedLM.from_pretrained(teacher_dir), n_layers, selection)
    student.save_pretrained(out_dir)
    AutoTokenizer.from_pretrained(teacher_dir).save_pretrained(out_dir)
    return count_parameters(student.distilbert)
