"""What the torch side needs from a family row (distil.config.families): its transformers classes, the
family of a loaded model, and the token ids its corpus framing, padding and masking use."""

from __future__ import annotations

from dataclasses import dataclass

import transformers

from distil.config.families import Family, family_of


def model_class(name: str) -> type:
    """The transformers class named in a family row (`GPT2LMHeadModel` -> transformers.GPT2LMHeadModel)."""
    return getattr(transformers, name)


def family_of_model(model) -> Family:
    """The row of a loaded teacher (its config's model_type).

    Raises:
        SpecError (a ValueError): a model_type outside the table, in one line naming the supported ones.
    """
    return family_of(model.config.model_type)


@dataclass(frozen=True)
class FamilyTokens:
    """A tokenizer's ids of a family's tokens: a corpus sequence is `bos piece eos` padded with `pad`;
    `mask` replaces masked tokens (None for a causal family); `special` (sorted) are never masked
    (distil.science.masking.token_probs gives them weight 0)."""

    bos: int
    eos: int
    pad: int
    mask: int | None
    special: tuple[int, ...]


def token_ids(family: Family, tokenizer) -> FamilyTokens:
    """The ids of `family`'s tokens in `tokenizer` (BERT: [CLS] [SEP] [PAD] [MASK]; RoBERTa: <s> </s> <pad>
    <mask>; GPT-2: <|endoftext|> for all three of bos, eos and pad).

    Raises:
        ValueError: the tokenizer lacks one of them (e.g. GPT-2's own files given to a RoBERTa teacher,
            which need RoBERTa's special-token layout), in one line naming the missing tokens.
    """
    vocab = tokenizer.get_vocab()  # added tokens included
    wanted = [family.bos_token, family.eos_token, family.pad_token, family.mask_token]
    missing = [t for t in wanted if t is not None and t not in vocab]
    if missing:
        raise ValueError(f"the tokenizer of this {family.model_type} teacher has no {', '.join(missing)} token; "
                         f"a {family.model_type} student needs the {family.model_type} special tokens")
    bos, eos, pad, mask = (vocab[t] if t is not None else None for t in wanted)
    special = set(tokenizer.all_special_ids) | {i for i in (bos, eos, pad, mask) if i is not None}
    return FamilyTokens(bos=bos, eos=eos, pad=pad, mask=mask, special=tuple(sorted(special)))


def save_model(model, tokenizer, out_dir) -> None:
    """`model.save_pretrained(out_dir)` and `tokenizer.save_pretrained(out_dir)`, after giving a tokenizer with no
    pad token (GPT-2's) its eos token as the pad token (GPT-2: `<|endoftext|>`, the gpt2 family's pad_token, as
    HF's GPT-2 examples do), in the tokenizer and in the model's config (`pad_token_id`), so that the saved model
    takes padded batches: latency profiling at batch 32, sequence classification, a user's batched generate. A
    causal model never attends to pads, so its outputs at real positions do not change. A tokenizer with a pad
    token (BERT's, RoBERTa's) is saved as it is. Both objects are changed in place.
    """
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
        model.config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
