"""Distillation corpus: plain text -> token-id sequences + corpus token counts, cached on disk.

Prepared once per sweep on the driver and read by every Ray Train worker, so workers never
tokenise. Local corpora are `<dir>/<split>.parquet` with a text column; anything else is a hub
dataset id, streamed with `datasets` (so only the rows used are read).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from datasets import load_dataset

from distil.spec import CorpusSpec


def stream_texts(corpus: CorpusSpec, split: str):
    """Yield non-empty text rows of one split, local parquet or hub dataset, in file order."""
    if os.path.isdir(corpus.path):
        files = {split: str(Path(corpus.path) / f"{split}.parquet")}
        if not Path(files[split]).is_file():
            raise FileNotFoundError(f"corpus.path: {files[split]} not found; the dir needs <split>.parquet files")
        ds = load_dataset("parquet", data_files=files, split=split, streaming=True)
    else:
        ds = load_dataset(corpus.path, corpus.name, split=split, streaming=True)
    for row in ds:
        text = row[corpus.text_column]
        if text and text.strip():
            yield text


def tokenize_texts(texts, tokenizer, max_seq_len: int, min_tokens: int, max_sequences: int) -> list[list[int]]:
    """[CLS] text [SEP] sequences of at most max_seq_len ids; long texts are cut into several.

    Pieces shorter than min_tokens (titles, headings, tails) are dropped. Stops at max_sequences.
    """
    body = max_seq_len - 2
    out: list[list[int]] = []
    batch: list[str] = []

    def flush():
        for ids in tokenizer(batch, add_special_tokens=False, verbose=False)["input_ids"]:
            for start in range(0, len(ids), body):
                piece = ids[start : start + body]
                if len(piece) >= min_tokens:
                    out.append([tokenizer.cls_token_id, *piece, tokenizer.sep_token_id])
        batch.clear()

    for text in texts:
        batch.append(text)
        if len(batch) == 1000:
            flush()
            if len(out) >= max_sequences:
                break
    if batch:
        flush()
    return out[:max_sequences]


def _key(corpus: CorpusSpec, tokenizer) -> str:
    vocab = hashlib.sha256(json.dumps(sorted(tokenizer.get_vocab().items())).encode()).hexdigest()
    return hashlib.sha256(f"{corpus.model_dump_json()}|{vocab}|v1".encode()).hexdigest()[:16]


def prepare_corpus(corpus: CorpusSpec, tokenizer, cache_dir: Path, eval_sequences: int = 512) -> Path:
    """Tokenise train and eval splits and count tokens; returns the cache dir (reused if present).

    Writes train.parquet / eval.parquet (column `input_ids`: list<int32>) and counts.npy
    ((V,) int64 token counts over the train sequences, for the masking's smoothing).
    """
    out = Path(cache_dir) / f"corpus-{_key(corpus, tokenizer)}"
    if (out / "done").exists():
        return out
    out.mkdir(parents=True, exist_ok=True)
    train = tokenize_texts(stream_texts(corpus, corpus.train_split), tokenizer, corpus.max_seq_len, corpus.min_tokens, corpus.max_sequences)
    held_out = tokenize_texts(stream_texts(corpus, corpus.eval_split), tokenizer, corpus.max_seq_len, corpus.min_tokens, eval_sequences)
    if len(train) < 16:
        raise ValueError(f"corpus.path: only {len(train)} sequences of >= {corpus.min_tokens} tokens in split {corpus.train_split!r}")
    for name, seqs in (("train", train), ("eval", held_out)):
        pq.write_table(pa.table({"input_ids": pa.array(seqs, type=pa.list_(pa.int32()))}), out / f"{name}.parquet")
    counts = np.bincount(np.concatenate([np.asarray(s) for s in train]), minlength=len(tokenizer))
    np.save(out / "counts.npy", counts.astype(np.int64))
    (out / "done").write_text(json.dumps({"train_sequences": len(train), "eval_sequences": len(held_out)}))
    return out


def load_sequences(corpus_dir: Path, name: str = "train") -> list[torch.Tensor]:
    """The cached token-id sequences of `name` ('train' or 'eval'), each a 1-D int64 tensor."""
    col = pq.read_table(Path(corpus_dir) / f"{name}.parquet").column("input_ids").to_pylist()
    return [torch.tensor(s, dtype=torch.long) for s in col]


def load_counts(corpus_dir: Path) -> torch.Tensor:
    """(V,) int64 token counts of the train sequences."""
    return torch.from_numpy(np.load(Path(corpus_dir) / "counts.npy"))


def length_grouped_batches(lengths: list[int], batch_size: int, seed: int, bucket: int = 50) -> list[list[int]]:
    """Batches of indices with similar lengths (little padding), in a seeded random order.

    Shuffle, sort each window of bucket·batch_size indices by length, cut into batches, shuffle
    the batches (the `group_by_length` idea of HF Trainer / the DistilBERT distiller).
    """
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(lengths), generator=g).tolist()
    batches = []
    window = bucket * batch_size
    for start in range(0, len(order), window):
        chunk = sorted(order[start : start + window], key=lambda i: lengths[i])
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    perm = torch.randperm(len(batches), generator=g).tolist()
    return [batches[i] for i in perm]


def pad_batch(seqs: list[torch.Tensor], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids (B, L_max), attention_mask (B, L_max)) with right padding."""
    ids = torch.nn.utils.rnn.pad_sequence(seqs, batch_first=True, padding_value=pad_id)
    mask = torch.zeros_like(ids)
    for i, s in enumerate(seqs):
        mask[i, : len(s)] = 1
    return ids, mask
