"""Model families as data: one row per teacher family a student can be built from.

The original Distil* code trains three students with one recipe (Sanh et al. 2019; HF
`examples/research_projects/distillation`: `train.py --student_type distilbert|roberta|gpt2`, `extract.py`
and `extract_distilbert.py` build each student from teacher layers [0, 2, 4, 7, 9, 11]):

| family    | teacher            | student               | objective  | evaluation  |
|-----------|--------------------|-----------------------|------------|-------------|
| `bert`    | BertForMaskedLM    | DistilBertForMaskedLM | mlm        | glue        |
| `roberta` | RobertaForMaskedLM | RobertaForMaskedLM    | mlm        | glue        |
| `gpt2`    | GPT2LMHeadModel    | GPT2LMHeadModel       | clm        | perplexity  |

A row holds names only (no torch, no transformers): the spec, preflight and the run read the same rows
(`family_of` refuses any other `model_type` in one line). distil.science.student builds the student a row
describes; distil.science.families resolves its classes and token ids.

BERT's student is another class (DistilBERT's parameter names, no token types), so its copy is the
rename table of distil.science.student. RoBERTa's and GPT-2's students are the teacher's own class with
fewer layers: every parameter is copied under its own name, student layer i from teacher layer
selected[i] (`copies_by_name`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from distil.config.spec import SpecError

MLM, CLM = "mlm", "clm"  # masked LM (Devlin et al. 2019 §3.1) / causal next-token LM (Radford et al. 2019)
GLUE, PERPLEXITY = "glue", "perplexity"


@dataclass(frozen=True)
class Family:
    """One teacher family: what its student is, how it is initialised, trained and evaluated.

    Parameter names are the transformers 5 state-dict keys; `{}` in a layer prefix is the layer index.
    `embeddings`, `final_norm` and `head` are the teacher's non-layer parameters the student keeps
    (prefixes); the LM head's decoder is tied to the word embeddings in every family. Tokens are the
    tokenizer's strings (distil.science.families.token_ids turns them into ids): a corpus sequence is
    `bos piece eos`, padded with `pad`; `mask_token` replaces masked tokens (mlm only).
    """

    model_type: str  # the teacher's config.json `model_type`
    teacher_class: str  # the transformers class the teacher loads as
    student_class: str  # the transformers class of the student
    depth_key: str  # the config key of the layer count
    teacher_layers: str  # prefix of teacher layer i's parameters
    student_layers: str  # prefix of student layer i's parameters
    embeddings: tuple[str, ...]
    final_norm: str | None  # a layer norm after the last layer (GPT-2's pre-LN stack), copied
    head: str
    objective: str  # MLM or CLM
    evaluation: str  # GLUE (fine-tuning, and the spec's own tasks) or PERPLEXITY (wikitext-2 test)
    bos_token: str
    eos_token: str
    pad_token: str
    mask_token: str | None
    positions_key: str = "max_position_embeddings"  # the config key of the position table's size
    positions_after_pad: bool = False  # positions are numbered from pad_token_id + 1 (RoBERTa's padding_idx)
    student_config: tuple[tuple[str, object], ...] = field(default=())  # config keys the student overrides

    def max_seq_len(self, config: dict) -> int:
        """The longest sequence (tokens, bos and eos included) a model of this family with `config` (its
        config.json, or `config.to_dict()`) takes: its position table's size, less pad_token_id + 1 when
        the positions start after the pad id (RoBERTa: max_position_embeddings 514, pad 1 -> 512)."""
        n = config.get(self.positions_key, 512)
        return n - config.get("pad_token_id", 1) - 1 if self.positions_after_pad else n

    @property
    def copies_by_name(self) -> bool:
        """The student is the teacher's class: each parameter is copied under its own name."""
        return self.student_class == self.teacher_class


FAMILIES: dict[str, Family] = {
    f.model_type: f
    for f in [
        Family(
            model_type="bert", teacher_class="BertForMaskedLM", student_class="DistilBertForMaskedLM",
            depth_key="num_hidden_layers", teacher_layers="bert.encoder.layer.{}",
            student_layers="distilbert.transformer.layer.{}",
            # DistilBERT has no token types: token_type_embeddings[0] is folded into the positions
            embeddings=("bert.embeddings.word_embeddings", "bert.embeddings.position_embeddings",
                        "bert.embeddings.token_type_embeddings", "bert.embeddings.LayerNorm"),
            final_norm=None, head="cls.predictions", objective=MLM, evaluation=GLUE,
            bos_token="[CLS]", eos_token="[SEP]", pad_token="[PAD]", mask_token="[MASK]",
        ),
        Family(
            model_type="roberta", teacher_class="RobertaForMaskedLM", student_class="RobertaForMaskedLM",
            depth_key="num_hidden_layers", teacher_layers="roberta.encoder.layer.{}",
            student_layers="roberta.encoder.layer.{}",
            # positions start at pad_token_id + 1 (RoBERTa's padding_idx offset): the student keeps the
            # teacher's pad id and position table as they are; one token type (row 0 of the teacher's)
            embeddings=("roberta.embeddings.word_embeddings", "roberta.embeddings.position_embeddings",
                        "roberta.embeddings.token_type_embeddings", "roberta.embeddings.LayerNorm"),
            final_norm=None, head="lm_head", objective=MLM, evaluation=GLUE,
            bos_token="<s>", eos_token="</s>", pad_token="<pad>", mask_token="<mask>", positions_after_pad=True,
            student_config=(("type_vocab_size", 1),),
        ),
        Family(
            model_type="gpt2", teacher_class="GPT2LMHeadModel", student_class="GPT2LMHeadModel",
            depth_key="n_layer", teacher_layers="transformer.h.{}", student_layers="transformer.h.{}",
            embeddings=("transformer.wte", "transformer.wpe"), final_norm="transformer.ln_f", head="lm_head",
            objective=CLM, evaluation=PERPLEXITY,
            # GPT-2 has one special token; pads carry no label and no attention, so any id serves (the
            # original distiller pads causal batches with it too)
            bos_token="<|endoftext|>", eos_token="<|endoftext|>", pad_token="<|endoftext|>", mask_token=None,
            positions_key="n_positions",
        ),
    ]
}


def supported_model_types() -> tuple[str, ...]:
    """The teacher `model_type`s a student can be built from, in table order."""
    return tuple(FAMILIES)


def family_of(model_type: str | None, where: str = "teacher") -> Family:
    """The row of a teacher whose config.json says `model_type`.

    Raises:
        SpecError (a ValueError): any other model_type, in one line starting with `where`
            (e.g. `teacher.model: gpt_neo is a 'gpt_neo' model; ...`) and naming the supported ones.
    """
    if model_type not in FAMILIES:
        supported = ", ".join(repr(m) for m in FAMILIES)
        raise SpecError(f"{where} is a {model_type!r} model; students are built from {supported} teachers only "
                        f"(config.json model_type one of {supported}, e.g. bert-base-uncased, roberta-base, gpt2)")
    return FAMILIES[model_type]
