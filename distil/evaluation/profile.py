"""Cost of a saved model: its size on disk and its CPU inference latency per example.

`measure` times the forward pass of the model as a sequence classifier (what GLUE fine-tuning
builds on it) on real SST-2 validation text packed to 128 tokens, at batch 1 (interactive use)
and batch 32 (throughput). Both latencies are per example, so they compare directly (on one CPU
thread batching gains little: ~10 % for the smoke student and the teacher). Each is timed in
several rounds and reported with its spread (min and max of the rounds' medians), so that a
difference inside the noise is not read as a difference.
"""

from __future__ import annotations

import inspect
import itertools
import os
import statistics
import time
from pathlib import Path

import pyarrow.parquet as pq
import torch

from distil.config.glue import TASKS, load_split
from distil.config.spec import ProfileSpec

# Where the sentences come from when no GLUE data dir is given: the shared assets next to the repo.
DEFAULT_GLUE = str(Path(__file__).resolve().parents[2] / "shared" / "data" / "glue")


def weight_files(model_dir: str | Path) -> list[Path]:
    """The files holding a saved model's weights: safetensors if any, else PyTorch .bin.

    Hub repos often ship the same weights in several formats; counting them all would overstate
    the size, so only the format transformers loads first is counted.
    """
    model_dir = Path(model_dir)
    return sorted(model_dir.glob("*.safetensors")) or sorted(model_dir.glob("pytorch_model*.bin"))


def packed_texts(tokenizer, n: int, seq_len: int, data: str | None) -> list[str]:
    """`n` pieces of real text, each of at least `seq_len` tokens: consecutive SST-2 validation
    sentences joined (single sentences are ~20 tokens; 128 is GLUE fine-tuning's max length).
    A local GLUE dir without SST-2 gives the first text field of the first task it has; a WikiText dir
    (holding test.parquet: a causal sweep's lm_eval.data) its non-empty lines."""
    data = data or DEFAULT_GLUE
    wikitext = Path(data) / "test.parquet"
    if wikitext.is_file():  # a WikiText dir (a causal sweep's lm_eval.data, when it has no GLUE): its lines
        sentences = itertools.cycle([r for r in pq.read_table(wikitext, columns=["text"]).column("text").to_pylist()
                                     if r.strip()])
        return [_packed(tokenizer, sentences, seq_len) for _ in range(n)]
    # SST-2 first (what the docs and the leaderboard say is timed), then any task with data.
    for task in sorted(TASKS.values(), key=lambda t: t.name != "sst2"):
        found = load_split(data, task.name, next(iter(task.eval_splits.values())), None)
        if found is not None:
            break
    else:
        raise FileNotFoundError(f"profile: no GLUE validation split in {data}")
    sentences = itertools.cycle(found[0][task.text_fields[0]])  # a small split (wnli) may be reused
    return [_packed(tokenizer, sentences, seq_len) for _ in range(n)]


def _packed(tokenizer, sentences, seq_len: int) -> str:
    """The next sentences of the iterator `sentences` joined with spaces until they make `seq_len` tokens."""
    piece = []
    while len(tokenizer(" ".join(piece))["input_ids"]) < seq_len:
        piece.append(next(sentences))
    return " ".join(piece)


@torch.inference_mode()
def round_medians_ms(model, batch: dict, warmup: int, repeats: int, rounds: int) -> list[float]:
    """Milliseconds per forward pass of `batch`: after `warmup` passes, `rounds` rounds of
    `repeats` timed passes each; returns each round's median (a list of `rounds` floats)."""
    for _ in range(warmup):
        model(**batch)
    medians = []
    for _ in range(rounds):
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            model(**batch)
            times.append(time.perf_counter() - t0)
        medians.append(1000 * statistics.median(times))
    return medians


_DEFAULT = ProfileSpec()  # the spec's `profile:` section holds the defaults


def measure(model_dir: str, kind: str, data: str | None = None, seq_len: int = _DEFAULT.seq_len, threads: int = 1,
            repeats_b1: int = _DEFAULT.repeats_b1, repeats_b32: int = _DEFAULT.repeats_b32,
            rounds: int = _DEFAULT.rounds) -> dict:
    """Size and CPU latency of the HF model in `model_dir` (a local dir or a hub id).

    The model is loaded with `AutoModelForSequenceClassification(num_labels=2)` (a fresh head:
    its cost, not its accuracy, is measured), put in eval mode and run under
    `torch.inference_mode` on `seq_len`-token inputs of real SST-2 validation text
    (`packed_texts`, from the GLUE dir `data`: local or hub, default ../shared/data/glue). After
    warm-up passes (2 at batch 1, 1 at batch 32), `rounds` rounds of `repeats_b1` / `repeats_b32`
    timed passes each are run; the latency is the median of the rounds' medians, its spread the
    min and max of the rounds' medians (what a second measurement could give: a difference
    inside it is noise; distil.report.html's Pareto front ignores such differences). Torch runs on
    `threads` CPU threads (default 1) for the measurement, so that models timed in different
    Ray tasks or trials (which get different thread pools) are compared alike, and neighbours
    disturb less; time models when nothing else runs on the cores.

    Returns {'kind', 'size_mb': bytes of the weight files / 1e6, 'latency_ms_b1',
    'latency_ms_b1_min', 'latency_ms_b1_max', 'latency_ms_b32', 'latency_ms_b32_min',
    'latency_ms_b32_max': milliseconds per example (batch time / batch size), 'rounds',
    'repeats_b1', 'repeats_b32', 'seq_len' (tokens), 'torch_threads', 'device': 'cpu'}. With
    the defaults it takes ~6 s for the 3-layer smoke student (2-core machine, loading included).

    Raises:
        FileNotFoundError: no GLUE validation split at all in `data`.
    """
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    local = model_dir if os.path.isdir(model_dir) else _hub_snapshot(model_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    if tokenizer.pad_token is None:  # GPT-2 has none: pad with <|endoftext|> (its eos), as its family does
        tokenizer.pad_token = tokenizer.eos_token
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # "newly initialized classifier" is expected here, not news
    try:
        # GPT2ForSequenceClassification refuses batches > 1 without a pad id in its config
        model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=2,
                                                                   pad_token_id=tokenizer.pad_token_id).eval()
    finally:
        hf_logging.set_verbosity(verbosity)
    texts = packed_texts(tokenizer, 32, seq_len, data)
    enc = tokenizer(texts, truncation=True, max_length=seq_len, padding="max_length", return_tensors="pt")
    # A BERT tokenizer also returns token_type_ids, which DistilBERT's forward does not take.
    accepted = inspect.signature(model.forward).parameters
    enc = {k: v for k, v in enc.items() if k in accepted}
    b1 = {k: v[:1] for k, v in enc.items()}
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        ms = {"b1": round_medians_ms(model, b1, warmup=2, repeats=repeats_b1, rounds=rounds),
              "b32": [t / 32 for t in round_medians_ms(model, enc, warmup=1, repeats=repeats_b32, rounds=rounds)]}
    finally:
        torch.set_num_threads(previous)
    latency = {}
    for b, medians in ms.items():
        latency |= {f"latency_ms_{b}": statistics.median(medians), f"latency_ms_{b}_min": min(medians),
                    f"latency_ms_{b}_max": max(medians)}
    return {
        "kind": kind,
        "size_mb": sum(f.stat().st_size for f in weight_files(local)) / 1e6,
        **latency,
        "rounds": rounds,
        "repeats_b1": repeats_b1,
        "repeats_b32": repeats_b32,
        "seq_len": seq_len,
        "torch_threads": threads,
        "device": "cpu",
    }


def _hub_snapshot(repo_id: str) -> str:
    """Local dir of a hub model's files (already in the cache once the model has been loaded)."""
    from huggingface_hub import snapshot_download

    return snapshot_download(repo_id, allow_patterns=["*.safetensors", "pytorch_model*.bin", "*.json", "*.txt"])
