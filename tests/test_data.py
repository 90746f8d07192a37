"""The corpus on real Wikipedia text: `datasets` tokenisation into memory-mapped Arrow, read by index.

The streamed path (`load_dataset(..., streaming=True)`) is the one every test here takes: local
parquet corpora stream like hub ones.
"""

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

import distil.science.data
from distil.science.data import length_grouped_batches, load_counts, load_sequences, pad_batch, prepare_corpus
from distil.science.distill import BatchStream
from distil.config.spec import CorpusSpec
from tests.conftest import CORPUS

# Small real splits (6,006 / 5,510 rows) stand in for train / eval.
SPEC = CorpusSpec(path=str(CORPUS), train_split="validation", eval_split="test", max_seq_len=32, max_sequences=3000)


def reference(tokenizer, split: str, spec: CorpusSpec, limit: int) -> list[list[int]]:
    """The corpus semantics written plainly: text by text, [CLS] piece [SEP], short pieces dropped."""
    body, out = spec.max_seq_len - 2, []
    for text in pq.read_table(CORPUS / f"{split}.parquet").column("text").to_pylist():
        ids = tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"] if text else []
        for start in range(0, len(ids), body):
            if len(ids[start : start + body]) >= spec.min_tokens:
                out.append([tokenizer.cls_token_id, *ids[start : start + body], tokenizer.sep_token_id])
        if len(out) >= limit:
            return out[:limit]
    return out


@pytest.fixture(scope="module")
def expected(tokenizer):
    return reference(tokenizer, "validation", SPEC, SPEC.max_sequences), reference(tokenizer, "test", SPEC, 40)


@pytest.fixture(scope="module")
def corpus_slice(tmp_path_factory):
    """A corpus dir holding the first 300 rows of the real splits: for the checks that need a
    prepared corpus but not its size (cache keys, errors), tokenised in a fraction of the time."""
    out = tmp_path_factory.mktemp("corpus-slice")
    for split in ("validation", "test"):
        pq.write_table(pq.read_table(CORPUS / f"{split}.parquet").slice(0, 300), out / f"{split}.parquet")
    return out


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory, tokenizer):
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(distil.science.data, "ROWS_PER_SHARD", 1000)  # several shards, as on a large corpus
        mp.setattr(distil.science.data, "ROWS_PER_PROC", 400)  # and 2 processes on each
        return prepare_corpus(SPEC, tokenizer, tmp_path_factory.mktemp("cache"), 40, num_proc=2)


def as_lists(seqs) -> list[list[int]]:
    return [seqs[i].tolist() for i in range(len(seqs))]


def test_sequences_and_counts_match_the_plain_reference(corpus_dir, expected, tokenizer):
    train, held_out = load_sequences(corpus_dir), load_sequences(corpus_dir, "eval")
    assert as_lists(train) == expected[0] and len(train) == 3000
    assert as_lists(held_out) == expected[1]
    assert train.lengths.dtype == np.int64 and train.lengths.tolist() == [len(s) for s in expected[0]]
    counts = np.bincount(np.concatenate(expected[0]), minlength=len(tokenizer))
    assert load_counts(corpus_dir).dtype == torch.int64 and np.array_equal(load_counts(corpus_dir).numpy(), counts)
    assert not (corpus_dir / "work").exists()  # the text shards are gone once the corpus is saved


def test_one_process_gives_the_same_corpus(corpus_dir, tmp_path, tokenizer):
    single = prepare_corpus(SPEC.model_copy(update={"max_sequences": 500}), tokenizer, tmp_path, 40, num_proc=1)
    assert as_lists(load_sequences(single)) == as_lists(load_sequences(corpus_dir))[:500]


def test_sequence_view_indexes_like_a_list(corpus_dir, expected):
    train = load_sequences(corpus_dir)
    assert train[np.int64(5)].dtype == torch.long and train[-1].tolist() == expected[0][-1]
    assert [s.tolist() for s in train[10:13]] == expected[0][10:13]
    with pytest.raises(IndexError):
        train[len(train)]


def test_cache_key_includes_eval_sequences(tmp_path, tokenizer, corpus_slice):
    spec = SPEC.model_copy(update={"path": str(corpus_slice), "max_sequences": 32})
    small = prepare_corpus(spec, tokenizer, tmp_path, 8)
    large = prepare_corpus(spec, tokenizer, tmp_path, 24)
    assert len(load_sequences(small, "eval")) == 8 and len(load_sequences(large, "eval")) == 24
    assert prepare_corpus(spec, tokenizer, tmp_path, 8) == small


def test_interrupted_preparation_reuses_the_shards_already_tokenised(tmp_path, tokenizer, monkeypatch, expected):
    monkeypatch.setattr(distil.science.data, "ROWS_PER_SHARD", 1000)
    monkeypatch.setattr(distil.science.data, "ROWS_PER_PROC", 400)
    real, done = distil.science.data.tokenize, []

    def tokenize(*args, **kwargs):
        if fail and len(done) == 2:
            raise KeyboardInterrupt
        out = real(*args, **kwargs)
        done.append({f["filename"]: (tmp_path / f["filename"]).stat().st_mtime_ns for f in out.cache_files})
        return out

    monkeypatch.setattr(distil.science.data, "tokenize", tokenize)
    fail = True
    with pytest.raises(KeyboardInterrupt):
        prepare_corpus(SPEC, tokenizer, tmp_path, 40, num_proc=2)
    first_run, done[:], fail = list(done), [], False
    assert all(len(files) == 2 and all(f.endswith("_of_00002.arrow") for f in files) for files in first_run)
    corpus_dir = prepare_corpus(SPEC, tokenizer, tmp_path, 40, num_proc=2)
    assert done[:2] == first_run  # same cache files, not rewritten
    assert as_lists(load_sequences(corpus_dir)) == expected[0]


def test_too_few_sequences_is_a_clear_error(tmp_path, tokenizer, corpus_slice):
    spec = SPEC.model_copy(update={"path": str(corpus_slice)})  # a whole split read: a short one
    with pytest.raises(ValueError, match="corpus.path: only"):
        prepare_corpus(spec.model_copy(update={"min_tokens": 31}), tokenizer, tmp_path, 8)
    with pytest.raises(FileNotFoundError, match="corpus.path"):
        prepare_corpus(spec.model_copy(update={"train_split": "nope"}), tokenizer, tmp_path, 8)


def test_length_grouped_batches_cover_the_corpus_once_with_little_padding():
    lengths = np.random.default_rng(1).integers(14, 129, size=10_003)
    batches = length_grouped_batches(lengths, 16, seed=0)
    assert batches.shape == (625, 16) and batches.dtype == np.int64
    assert len(np.unique(batches)) == 10_000  # each sequence at most once; only 3 left out
    assert np.array_equal(batches, length_grouped_batches(lengths, 16, seed=0))
    assert not np.array_equal(batches, length_grouped_batches(lengths, 16, seed=1))
    random_batches = np.random.default_rng(0).permutation(10_000).reshape(625, 16)

    def padding(b):
        return (lengths[b].max(1, keepdims=True) - lengths[b]).mean()

    assert padding(batches) < 0.1 * padding(random_batches)
    with pytest.raises(ValueError, match="one batch"):
        length_grouped_batches(lengths[:8], 16, seed=0)


def test_batch_of_a_step_is_a_pure_function_of_seed_step_and_rank(corpus_dir):
    sequences = load_sequences(corpus_dir)
    epoch = (len(sequences) // 8) // 2  # steps per epoch with batch 8 on 2 ranks
    steps = [0, 1, epoch - 1, epoch, epoch + 5, 3 * epoch + 2]  # across epoch boundaries
    a, b = (BatchStream(sequences, 8, seed=0, rank=1, world=2) for _ in range(2))
    from_zero = {s: a(s, 0) for s in range(max(steps) + 1)}
    for s in steps:
        restarted = BatchStream(load_sequences(corpus_dir), 8, seed=0, rank=1, world=2)  # a fresh worker at step s
        for ids, attn in (b(s, 0), restarted(s, 0)):
            assert torch.equal(ids, from_zero[s][0]) and torch.equal(attn, from_zero[s][1])
    rank0 = BatchStream(sequences, 8, seed=0, rank=0, world=2)
    assert not torch.equal(rank0(0, 0)[0], from_zero[0][0])
    assert not torch.equal(from_zero[0][0], from_zero[epoch][0])  # reshuffled each epoch


def test_pad_batch_masks_the_padding():
    ids, attn = pad_batch([torch.tensor([101, 7, 102]), torch.tensor([101, 102])], pad_id=0)
    assert ids.tolist() == [[101, 7, 102], [101, 102, 0]] and attn.tolist() == [[1, 1, 1], [1, 1, 0]]
