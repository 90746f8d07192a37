"""Student construction: a DistilBERT initialised from chosen layers of a BERT teacher.

Sanh et al. 2019 (DistilBERT), section 3: the student keeps the teacher's hidden size, drops the
token-type embeddings and the pooler, halves the depth, and is initialised from the teacher by
taking one layer out of two. `distil.config.layers` names the rules; `build_student` copies weights.
"""

from __future__ import annotations

import torch
from transformers import BertConfig, BertForMaskedLM, DistilBertConfig, DistilBertForMaskedLM

from distil.config.layers import LayerSelection, select_layers  # noqa: F401  (select_layers re-exported)


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
