"""Distillation corpus: plain text -> token-id sequences + corpus token counts, cached on disk.

Prepared once per sweep on the driver with `datasets`, read by every Ray Train worker, so
workers never tokenise and never hold the corpus in memory:

1. text rows stream (`streaming=True`) from a local `<dir>/<split>.parquet` or a hub dataset
   (`wikimedia/wikipedia`) into Arrow shards of at most ROWS_PER_SHARD rows, one shard at a time;
2. each shard is tokenised by `Dataset.map(batched=True, num_proc=…)`, whose fingerprint cache
   lets a rerun after an interruption reuse the shards already tokenised;
3. streaming stops once there are enough sequences; the first `max_sequences` are saved as Arrow
   files (`save_to_disk`) and their tokens counted one record batch at a time.

Workers memory-map those files (`load_sequences`): a sequence is read when a batch needs it.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
from pathlib import Path

import datasets
import numpy as np
import pyarrow as pa
import torch
from datasets import Dataset, Features, List, Value, concatenate_datasets, load_dataset
from datasets.utils import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars

from distil.config.families import FAMILIES, Family
from distil.config.rules import MIN_TRAIN_SEQUENCES, corpus_pieces, corpus_split_file
from distil.config.spec import CorpusSpec
from distil.science.families import token_ids

ROWS_PER_SHARD = 100_000  # text rows per Arrow shard: bounds the driver's memory while streaming
ROWS_PER_PROC = 10_000  # fewest rows worth a tokenising process (starting one costs ~1 s)
FEATURES = Features({"input_ids": List(Value("int32"))})


def stream_texts(corpus: CorpusSpec, split: str) -> datasets.IterableDataset:
    """The text column of one split as a streamed dataset in Arrow format (rows in file order).

    Raises:
        FileNotFoundError: a local corpus dir without `<split>.parquet`.
    """
    if os.path.isdir(corpus.path):
        file = corpus_split_file(corpus, split)
        if not file.is_file():
            raise FileNotFoundError(f"corpus.path: {file} not found; the dir needs <split>.parquet files")
        ds = load_dataset("parquet", data_files={split: str(file)}, split=split, streaming=True)
    else:
        ds = load_dataset(corpus.path, corpus.name, split=split, streaming=True)
    return ds.select_columns([corpus.text_column]).with_format("arrow")


def _cut(batch: dict, tokenizer, max_seq_len: int, min_tokens: int, bos: int, eos: int) -> dict:
    """`Dataset.map` function: bos piece eos for every piece of every text that
    distil.config.rules.corpus_pieces keeps (the cut preflight counts with)."""
    rows = tokenizer([t or "" for t in batch["text"]], add_special_tokens=False, verbose=False)["input_ids"]
    return {"input_ids": [[bos, *ids[start:end], eos] for ids in rows
                          for start, end in corpus_pieces(len(ids), max_seq_len, min_tokens)]}


def tokenize(texts: Dataset, tokenizer, max_seq_len: int, min_tokens: int, num_proc: int = 1,
             family: Family = FAMILIES["bert"]) -> Dataset:
    """Token-id sequences of a `text` dataset, in row order: bos piece eos, at most max_seq_len ids, with
    `family`'s bos and eos (distil.config.families: BERT [CLS] piece [SEP], RoBERTa <s> piece </s>,
    GPT-2 <|endoftext|> piece <|endoftext|>).

    Each text is cut into pieces of max_seq_len - 2 tokens; pieces shorter than min_tokens (titles,
    headings, tails) are dropped. Up to `num_proc` processes (ROWS_PER_PROC rows each at least)
    tokenise contiguous slices of `texts`, so the result does not depend on their number.
    Cached next to `texts` under `datasets`' fingerprint.

    Raises:
        ValueError: the tokenizer lacks one of the family's tokens (distil.science.families.token_ids).
    """
    ids = token_ids(family, tokenizer)
    num_proc = min(num_proc, math.ceil(len(texts) / ROWS_PER_PROC))
    return texts.map(
        _cut, batched=True, remove_columns=texts.column_names, features=FEATURES,
        num_proc=num_proc if num_proc > 1 else None,
        fn_kwargs={"tokenizer": tokenizer, "max_seq_len": max_seq_len, "min_tokens": min_tokens, "bos": ids.bos,
                   "eos": ids.eos},
    )


def _text_shard(batches, path: Path, rows: int) -> Dataset | None:
    """The next >= `rows` text rows of the stream (whole 1000-row batches) as a mapped Arrow file.

    A shard that an interrupted run already wrote is reused and its rows skipped in the stream,
    so its tokenised version is found in the `datasets` cache (the fingerprint covers the file's
    mtime). None when the stream is exhausted.
    """
    if path.exists():
        shard, skipped = Dataset.from_file(str(path)), 0
        while skipped < len(shard):
            skipped += next(batches).num_rows
        return shard
    tmp, written = path.with_suffix(".tmp"), 0
    with pa.OSFile(str(tmp), "wb") as sink:
        writer = None
        for table in batches:
            table = table.rename_columns(["text"])
            writer = writer or pa.ipc.new_stream(sink, table.schema)  # the format `Dataset.from_file` maps
            writer.write_table(table)
            written += table.num_rows
            if written >= rows:
                break
        if writer:
            writer.close()
    if not written:
        tmp.unlink()
        return None
    os.replace(tmp, path)  # only complete shards are ever reused
    return Dataset.from_file(str(path))


def _tokenize_split(corpus: CorpusSpec, split: str, tokenizer, limit: int, work: Path, num_proc: int,
                    family: Family) -> Dataset:
    """The first `limit` sequences of a split, streaming only as many text rows as they need."""
    work.mkdir(parents=True, exist_ok=True)
    batches = stream_texts(corpus, split).iter(batch_size=1000)
    parts, rows_read, found = [], 0, 0
    try:
        while found < limit:
            per_row = found / rows_read if found else 1.0  # sequences per text row so far
            want = min(ROWS_PER_SHARD, max(1000, math.ceil(1.1 * (limit - found) / per_row)))
            texts = _text_shard(batches, work / f"{len(parts):05d}.arrow", want)
            if texts is None:
                break
            parts.append(tokenize(texts, tokenizer, corpus.max_seq_len, corpus.min_tokens, num_proc, family))
            rows_read, found = rows_read + len(texts), found + len(parts[-1])
            if len(texts) < want:  # the split is exhausted
                break
    finally:
        batches.close()
    if not parts:
        return Dataset.from_dict({"input_ids": []}, features=FEATURES)
    return concatenate_datasets(parts).select(range(min(found, limit)))


def _key(corpus: CorpusSpec, tokenizer, eval_sequences: int, family: Family) -> str:
    vocab = hashlib.sha256(json.dumps(sorted(tokenizer.get_vocab().items())).encode()).hexdigest()
    # BERT's [CLS] ... [SEP] is the frame every corpus had before families: its key stays what it was
    frame = "" if family.model_type == "bert" else f"|frame={family.bos_token},{family.eos_token}"
    key = f"{corpus.model_dump_json()}|{vocab}|eval={eval_sequences}{frame}|v2"
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def prepare_corpus(corpus: CorpusSpec, tokenizer, cache_dir: Path, eval_sequences: int = 512,
                   num_proc: int | None = None, family: Family = FAMILIES["bert"]) -> Path:
    """Tokenise the train and eval splits and count tokens; returns the corpus dir (reused if present).

    Writes `train/` and `eval/` (`Dataset.save_to_disk`, column `input_ids`: list<int32>, at most
    corpus.max_sequences and eval_sequences rows; each sequence framed by the teacher `family`'s bos and
    eos, see tokenize) and counts.npy ((V,) int64 token counts over the train sequences, for the
    masking's smoothing). The dir is keyed by the corpus spec, the vocabulary, eval_sequences and the
    frame (a BERT corpus by the first three alone, as before families). num_proc: tokenising processes
    (default: the usable CPUs). The teacher's positions are checked against corpus.max_seq_len before
    (distil.config.rules.check_max_seq_len).

    Raises:
        ValueError: fewer than MIN_TRAIN_SEQUENCES (16) train sequences; a tokenizer without the family's tokens.
        FileNotFoundError: a local corpus dir without the split's parquet file.
    """
    token_ids(family, tokenizer)  # a tokenizer without the family's tokens fails here, before any work
    out = Path(cache_dir) / f"corpus-{_key(corpus, tokenizer, eval_sequences, family)}"
    if (out / "done").exists():
        return out
    num_proc = num_proc or len(os.sched_getaffinity(0))
    print(f"tokenising the corpus (up to {corpus.max_sequences} sequences of {corpus.max_seq_len} tokens, "
          f"{num_proc} processes) into {out} ...", flush=True)
    bars_were_off = are_progress_bars_disabled()
    disable_progress_bars()  # one bar per shard and process would flood the sweep's console
    try:
        work = out / "work"
        splits = {
            "train": _tokenize_split(corpus, corpus.train_split, tokenizer, corpus.max_sequences, work / "train",
                                     num_proc, family),
            "eval": _tokenize_split(corpus, corpus.eval_split, tokenizer, eval_sequences, work / "eval", num_proc,
                                    family),
        }
        if len(splits["train"]) < MIN_TRAIN_SEQUENCES:
            raise ValueError(f"corpus.path: only {len(splits['train'])} sequences of >= {corpus.min_tokens} tokens in "
                             f"split {corpus.train_split!r}")
        for name, ds in splits.items():
            shutil.rmtree(out / name, ignore_errors=True)
            ds.save_to_disk(str(out / name))
    finally:
        if not bars_were_off:
            enable_progress_bars()
    train = load_sequences(out, "train")
    np.save(out / "counts.npy", train.token_counts(len(tokenizer)))
    shutil.rmtree(out / "work")
    (out / "done").write_text(json.dumps({"train_sequences": len(train), "eval_sequences": len(splits["eval"])}))
    return out


class TokenSequences:
    """The token-id sequences of a corpus split, memory-mapped; nothing is read until indexed.

    `lengths`: (N,) int64 numpy array. `seqs[i]`: (L_i,) int64 tensor (bos ... eos: [CLS] ... [SEP]), read
    from the mapped file; `seqs[a:b]`: a list of such tensors. Per Arrow record batch it keeps
    two zero-copy numpy views (offsets, values), so a million sequences cost ~12 bytes each
    (lengths + offsets), not a Python object each.
    """

    def __init__(self, column: pa.ChunkedArray):
        chunks = [c for c in column.chunks if len(c)]
        self._offsets = [c.offsets.to_numpy() for c in chunks]  # offsets into the whole `values`
        self._values = [c.values.to_numpy() for c in chunks]
        self._starts = np.cumsum([0] + [len(c) for c in chunks])
        self.lengths = np.concatenate([np.diff(o) for o in self._offsets] or [[]]).astype(np.int64)

    def __len__(self) -> int:
        return len(self.lengths)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if not -len(self) <= i < len(self):
            raise IndexError(f"sequence {i} of {len(self)}")
        i = int(i) % len(self)
        c = int(np.searchsorted(self._starts, i, side="right")) - 1
        k = i - self._starts[c]
        start, end = self._offsets[c][k], self._offsets[c][k + 1]
        return torch.from_numpy(self._values[c][start:end].astype(np.int64))

    def token_counts(self, vocab_size: int) -> np.ndarray:
        """(vocab_size,) int64 occurrences of every token id, one record batch at a time."""
        counts = np.zeros(vocab_size, dtype=np.int64)
        for offsets, values in zip(self._offsets, self._values):
            counts += np.bincount(values[offsets[0] : offsets[-1]], minlength=vocab_size)
        return counts


def load_sequences(corpus_dir: Path, name: str = "train") -> TokenSequences:
    """The cached sequences of `name` ('train' or 'eval') of a `prepare_corpus` dir, memory-mapped."""
    return TokenSequences(Dataset.load_from_disk(str(Path(corpus_dir) / name)).data.column("input_ids"))


def load_counts(corpus_dir: Path) -> torch.Tensor:
    """(V,) int64 token counts of the train sequences."""
    return torch.from_numpy(np.load(Path(corpus_dir) / "counts.npy"))


def length_grouped_batches(lengths, batch_size: int, seed: int, bucket: int = 50) -> np.ndarray:
    """(len(lengths) // batch_size, batch_size) int64 sequence indices, batches of similar lengths.

    Shuffle, sort each window of bucket·batch_size indices by length, cut into batches, shuffle
    the batches (the `group_by_length` idea of HF Trainer / the DistilBERT distiller). The
    len(lengths) % batch_size sequences that do not fill a batch are a random few, other ones
    for another seed. A pure function of (lengths, batch_size, seed, bucket).

    Raises:
        ValueError: fewer sequences than batch_size.
    """
    lengths = np.asarray(lengths)
    if len(lengths) < batch_size:
        raise ValueError(f"{len(lengths)} sequences do not fill one batch of {batch_size}; lower the batch size or "
                         "raise corpus.max_sequences")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(lengths))[: len(lengths) // batch_size * batch_size]
    window = np.arange(len(order)) // (bucket * batch_size)
    order = order[np.lexsort((lengths[order], window))]  # stable: by window, then by length
    batches = order.reshape(-1, batch_size)
    return batches[rng.permutation(len(batches))]


def pad_batch(seqs, pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids (B, L_max), attention_mask (B, L_max)) with right padding of B 1-D id tensors."""
    ids = torch.nn.utils.rnn.pad_sequence(list(seqs), batch_first=True, padding_value=pad_id)
    lengths = torch.tensor([len(s) for s in seqs])
    return ids, (torch.arange(ids.shape[1]) < lengths[:, None]).long()
