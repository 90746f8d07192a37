"""Perplexity of a causal LM on held-out text, kept per article so that it can be bootstrapped over articles.

The evaluation of a GPT-2 family student (distil.config.families: `evaluation` "perplexity"), as DistilGPT2
was evaluated (Sanh et al. 2019's release: WikiText-103 test perplexity). The text is WikiText's test split
(Merity et al. 2016; ../shared/data/corpus/wikitext-2-raw-v1/test.parquet, whose text is also WikiText-103's
test split), cut into articles at its top-level ` = Title = ` lines (`wikitext_articles`).

Scoring: the sliding window of transformers' "Perplexity of fixed-length models" guide. A window of
`window` tokens moves by `stride` tokens; each window scores only the tokens the previous one did not, so
every token is scored once, with all tokens before it as context while they fit in a window and at least
window − stride of them after that. Each article is scored on its own, preceded by `bos` (GPT-2's
<|endoftext|>, the document boundary GPT-2 was trained with; lm-evaluation-harness's rolling windows
do the same) so that its first token is scored too. Per article a the summed negative log-likelihood
NLL_a (nats) of its n_a tokens is kept, and

    PPL = exp(Σ_a NLL_a / Σ_a n_a)      (per token of the tokenizer, so comparable within one tokenizer).

Intervals: a percentile bootstrap over articles (Efron & Tibshirani 1993, ch. 13), each resample drawing
the articles with replacement and recomputing PPL from the drawn sums, the same draws for every model
(paired), so the ratio of a student's perplexity to its teacher's comes with an interval of the ratio
itself (`perplexity_ratio`). The articles are the unit: tokens within an article are not independent.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pyarrow.parquet as pq

from distil.evaluation.confidence import LEVEL, RESAMPLES, SEED, interval, resample_counts

WIKITEXT_TEST = "test.parquet"  # in a WikiText raw dir (column `text`, one row per line of the raw file)
_TITLE = re.compile(r"^ = [^=].* = \n?$")  # ` = Robert Boulter = `; ` = = Career = = ` is a section


@dataclass(frozen=True)
class Article:
    title: str
    text: str


def wikitext_articles(rows: Sequence[str]) -> list[Article]:
    """WikiText rows (the HF `wikitext` raw configs' rows: a line with its `\\n`, or "" for a blank line)
    cut into articles at the top-level title rows ` = Title = `; sections (` = = ... = = `) stay in their
    article. An article's text is its rows as the raw file has them (title row first, a blank row a "\\n").
    Blank rows before the first title are dropped; text there would be an article titled "".
    """
    articles: list[tuple[str, list[str]]] = []
    for row in rows:
        if _TITLE.match(row):
            articles.append((row.strip().strip("=").strip(), []))
        elif not articles and not row.strip():
            continue
        elif not articles:
            articles.append(("", []))
        articles[-1][1].append(row or "\n")
    return [Article(title, "".join(lines)) for title, lines in articles]


def read_wikitext(path: str | os.PathLike) -> list[Article]:
    """The articles of a WikiText split: `path` is its parquet file or a dir holding `test.parquet`.

    Raises:
        FileNotFoundError: no such file.
    """
    path = Path(path)
    file = path / WIKITEXT_TEST if path.is_dir() else path
    return wikitext_articles(pq.read_table(file, columns=["text"]).column("text").to_pylist())


@dataclass(frozen=True)
class ArticleNLL:
    """A model's scores on a list of articles: nll (A,) float64 summed negative log-likelihood (nats) of
    each article's scored tokens, tokens (A,) int64 how many were scored, and how (window, stride, bos)."""

    titles: tuple[str, ...]
    nll: np.ndarray
    tokens: np.ndarray
    window: int
    stride: int
    bos: int | None  # the id put before each article, None for none

    @property
    def perplexity(self) -> float:
        """exp(Σ NLL / Σ tokens) over every article."""
        return math.exp(self.nll.sum() / self.tokens.sum())

    def to_json(self) -> dict:
        """What a row's result.json keeps under "lm" (distil.store.records.Result): every field, arrays as lists,
        and the perplexity they give (for a reader of the file; the leaderboard recomputes it)."""
        return {"perplexity": self.perplexity, "window": self.window, "stride": self.stride, "bos": self.bos,
                "titles": list(self.titles), "nll": self.nll.tolist(), "tokens": self.tokens.tolist()}

    @classmethod
    def from_json(cls, d: dict) -> ArticleNLL:
        """The ArticleNLL of `to_json`'s dict. Raises KeyError naming a missing field."""
        return cls(tuple(d["titles"]), np.asarray(d["nll"], dtype=np.float64), np.asarray(d["tokens"], dtype=np.int64),
                   d["window"], d["stride"], d.get("bos"))


def window_spans(n: int, window: int, stride: int) -> list[tuple[int, int, int]]:
    """The windows over a sequence of n tokens: (begin, end, first) with tokens [begin, end) as input and
    tokens [first, end) scored, each token 1..n−1 exactly once (token 0 has no context: it is the `bos`).
    The guide's loop: begin = 0, stride, 2·stride, ...; end = min(begin + window, n); first = the previous
    window's end (1 for the first window); it stops at the window that reaches n.

    Raises:
        ValueError: not 1 <= stride < window (with stride = window a window's first token has no context).
    """
    if not 1 <= stride < window:
        raise ValueError(f"perplexity stride {stride} must be at least 1 and below the window {window}, so that "
                         "every scored token has context")
    spans, prev_end = [], 1
    for begin in range(0, n, stride):
        end = min(begin + window, n)
        if end > prev_end:
            spans.append((begin, end, prev_end))
        prev_end = end
        if end == n:
            break
    return spans


def article_nll(model, tokenizer, articles: Sequence[Article], *, window: int, stride: int, bos: bool = True,
                batch_size: int = 4) -> ArticleNLL:
    """Score `articles` with the causal LM `model` (put in eval mode; on its own device) by sliding windows
    (module docstring; `window_spans`). `bos`: put the tokenizer's bos token (GPT-2's <|endoftext|>) before
    every article as context; without it an article's first token is context only. Windows of all
    articles run in batches of `batch_size`, right-padded (a causal model's real positions do not see the
    pads); the log-likelihoods are computed in fp32.

    Returns an ArticleNLL: per article the summed NLL and the scored token count (every token of the
    article, one fewer without `bos`).

    Raises:
        ValueError: a window longer than the model's positions; a bad stride (window_spans); `bos` with a
            tokenizer that has no bos token.
    """
    import torch  # here, not at the top: the leaderboard reads ArticleNLL records without torch

    with torch.no_grad():
        return _article_nll(model, tokenizer, articles, window, stride, bos, batch_size)


def _article_nll(model, tokenizer, articles: Sequence[Article], window: int, stride: int, bos: bool,
                 batch_size: int) -> ArticleNLL:
    import torch
    import torch.nn.functional as F

    positions = model.config.max_position_embeddings  # GPT-2: n_positions
    if window > positions:
        raise ValueError(f"perplexity window {window} is longer than the model's {positions} positions")
    if bos and tokenizer.bos_token_id is None:
        raise ValueError("the tokenizer has no bos token to put before each article; pass bos=False")
    bos = tokenizer.bos_token_id if bos else None
    device = next(model.parameters()).device
    model.eval()
    jobs = []  # (article, input ids (m,), targets (m,): the next token where scored, -100 elsewhere)
    for a, article in enumerate(articles):
        ids = tokenizer(article.text, add_special_tokens=False, verbose=False)["input_ids"]
        seq = torch.tensor(([bos] if bos is not None else []) + ids, dtype=torch.long)
        for begin, end, first in window_spans(len(seq), window, stride):
            targets = torch.full((end - begin,), -100, dtype=torch.long)
            targets[first - 1 - begin : end - 1 - begin] = seq[first:end]  # logits at p - 1 predict token p
            jobs.append((a, seq[begin:end], targets))
    nll, tokens = np.zeros(len(articles)), np.zeros(len(articles), dtype=np.int64)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0  # never attended, never scored
    for start in range(0, len(jobs), batch_size):
        chunk = jobs[start : start + batch_size]
        m = max(len(ids) for _, ids, _ in chunk)
        ids = torch.full((len(chunk), m), pad, dtype=torch.long)
        targets = torch.full((len(chunk), m), -100, dtype=torch.long)
        attn = torch.zeros((len(chunk), m), dtype=torch.long)
        for i, (_, x, y) in enumerate(chunk):
            ids[i, : len(x)], targets[i, : len(y)], attn[i, : len(x)] = x, y, 1
        logits = model(input_ids=ids.to(device), attention_mask=attn.to(device)).logits  # (b, m, V)
        token_nll = F.cross_entropy(logits.float().flatten(0, 1), targets.to(device).flatten(), reduction="none")
        per_window = token_nll.view(len(chunk), m).double().sum(1).cpu().numpy()  # pads and context add 0
        for i, (a, _, y) in enumerate(chunk):
            nll[a] += per_window[i]
            tokens[a] += int((y != -100).sum())
    return ArticleNLL(tuple(x.title for x in articles), nll, tokens, window, stride, bos)


def wikitext_perplexity(model, tokenizer, path: str | os.PathLike, *, window: int = 1024, stride: int = 512,
                        batch_size: int = 4) -> ArticleNLL:
    """`article_nll` of `model` on the WikiText split at `path` (read_wikitext), GPT-2's window (1024)
    and half of it as the stride by default."""
    return article_nll(model, tokenizer, read_wikitext(path), window=window, stride=stride, batch_size=batch_size)


def sequence_perplexity(model, sequences: Sequence, batch_size: int = 16) -> dict:
    """Perplexity of the causal LM `model` on whole token sequences that each fit its positions (the held-out
    `eval` split of the distillation corpus, distil.science.data.load_sequences: `bos piece eos`, at most
    corpus.max_seq_len tokens): every token after the first is scored with all tokens before it, and

        PPL = exp(Σ NLL / Σ scored tokens)   (nats per token, natural log).

    `sequences`: 1-D int64 tensors. Batches of `batch_size`, right-padded (pads carry no label:
    distil.science.losses.causal_labels), on the model's device, log-likelihoods in fp32. Returns
    {"perplexity", "sequences", "tokens" (scored)}.

    Raises:
        ValueError: no sequence of 2 or more tokens.
    """
    import torch
    import torch.nn.functional as F

    from distil.science.data import pad_batch
    from distil.science.losses import causal_labels

    device = next(model.parameters()).device
    model.eval()
    nll, tokens, n = 0.0, 0, 0
    with torch.no_grad():
        for start in range(0, len(sequences), batch_size):
            seqs = [sequences[i] for i in range(start, min(start + batch_size, len(sequences)))]
            ids, attn = pad_batch(seqs, 0)  # (b, m); the pad id is never attended or scored
            labels = causal_labels(ids, attn)[:, 1:].to(device)  # position l predicts token l + 1
            logits = model(input_ids=ids.to(device), attention_mask=attn.to(device)).logits[:, :-1]  # (b, m-1, V)
            nll += F.cross_entropy(logits.float().flatten(0, 1), labels.flatten(), reduction="sum").item()
            tokens += int((labels != -100).sum())
            n += len(seqs)
    if tokens == 0:
        raise ValueError("no sequence of 2 or more tokens to score")
    return {"perplexity": math.exp(nll / tokens), "sequences": n, "tokens": tokens}


def _causal_lm(model_dir: str):
    """The saved causal LM at `model_dir` (a local dir or hub id, AutoModelForCausalLM), on the GPU when the
    process sees one (a Ray task given num_gpus), else the CPU."""
    import torch
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(model_dir).to("cuda" if torch.cuda.is_available() else "cpu")


def score_saved_model(model_dir: str, data: str | os.PathLike, *, window: int, stride: int,
                      max_articles: int | None = None, batch_size: int = 4,
                      selection_corpus: str | os.PathLike | None = None) -> dict:
    """A saved causal LM's perplexity record, as a row's result.json keeps it (ArticleNLL.to_json) plus
    "data" (the WikiText path), "articles" (how many were scored) and "seconds" (wall time of the scoring).
    `model_dir` is a local dir or hub id loaded with AutoModelForCausalLM and its own tokenizer, on the GPU when
    the process sees one (a Ray task given num_gpus), else on the CPU;
    the first `max_articles` articles of the split at `data` (read_wikitext; None: all) are scored by
    article_nll with `window`, `stride` and `batch_size`. With `selection_corpus` (a prepare_corpus dir) also
    "selection": sequence_perplexity on its held-out `eval` sequences, what the search ranks a candidate by (so
    it never selects on the WikiText rows the leaderboard reports). The sweep runs it as a Ray task per row
    (distil.search.finetune_runs.submit_lm).

    Raises:
        ValueError: a window longer than the model's positions, a bad stride (article_nll).
        FileNotFoundError: no WikiText split at `data`.
    """
    import time

    from transformers import AutoTokenizer

    t0 = time.time()
    articles = read_wikitext(data)[:max_articles]
    model = _causal_lm(model_dir)
    result = article_nll(model, AutoTokenizer.from_pretrained(model_dir), articles, window=window, stride=stride,
                         batch_size=batch_size)
    out = {**result.to_json(), "data": str(data), "articles": len(articles)}
    if selection_corpus is not None:
        from distil.science.data import load_sequences

        out["selection"] = sequence_perplexity(model, load_sequences(Path(selection_corpus), "eval"))
    return {**out, "seconds": round(time.time() - t0, 1)}


def held_out_perplexity(model_dir: str, corpus_dir: str | os.PathLike) -> dict:
    """`sequence_perplexity` of the saved causal LM at `model_dir` (a local dir or hub id, AutoModelForCausalLM;
    on the GPU when the process sees one, else the CPU) on the held-out `eval` sequences of the prepare_corpus dir
    `corpus_dir`: the sequences, batches and arithmetic of score_saved_model's "selection", so that a rung's
    perplexity and a finished candidate's selection perplexity are one measure. Returns sequence_perplexity's
    {"perplexity", "sequences", "tokens"} and "seconds" (wall time, loading included). The early-stopping proxy
    of a causal teacher's sweep (distil.search.finetune_runs.proxy_point) runs it as a Ray task.

    Raises:
        FileNotFoundError: no `eval` split in `corpus_dir`.
        ValueError: no sequence of 2 or more tokens (sequence_perplexity).
    """
    import time

    from distil.science.data import load_sequences

    t0 = time.time()
    model = _causal_lm(model_dir)
    out = sequence_perplexity(model, load_sequences(Path(corpus_dir), "eval"))
    return {**out, "seconds": round(time.time() - t0, 1)}


def resampled_perplexities(results: Sequence[ArticleNLL], resamples: int = RESAMPLES, seed: int = SEED) -> np.ndarray:
    """(resamples, M) perplexities of M models' results over the same bootstrap draws of the articles:
    resample b draws A articles with replacement (numpy default_rng(seed); distil.evaluation.confidence's
    counts) and gives each model exp(Σ drawn NLL / Σ drawn tokens).

    Raises:
        ValueError: the results are not of the same articles with the same token counts (another text or
            tokenizer: their perplexities are per different tokens, and cannot be paired).
    """
    first = results[0]
    for r in results[1:]:
        if r.titles != first.titles or not np.array_equal(r.tokens, first.tokens):
            raise ValueError("perplexities over different articles or tokens cannot be paired; score every model "
                             "on the same text with the same tokenizer")
    counts = resample_counts(len(first.titles), resamples, np.random.default_rng(seed))  # (B, A)
    nll = np.stack([r.nll for r in results], axis=1)  # (A, M)
    return np.exp(counts @ nll / (counts @ first.tokens.astype(float))[:, None])


def perplexity_interval(result: ArticleNLL, resamples: int = RESAMPLES, seed: int = SEED,
                        level: float = LEVEL) -> tuple[float, float]:
    """Percentile bootstrap interval (lo, hi) of `result.perplexity` over articles."""
    return interval(resampled_perplexities([result], resamples, seed)[:, 0], level)


def perplexity_ratio(student: ArticleNLL, teacher: ArticleNLL, resamples: int = RESAMPLES, seed: int = SEED,
                     level: float = LEVEL) -> tuple[float, float, float]:
    """(ratio, lo, hi): PPL_student / PPL_teacher and its paired percentile interval (the same article
    draws for both; DistilGPT2's 21.1 against GPT-2's 16.3 is 1.29). Above 1: the student is worse.

    Raises:
        ValueError: the two were not scored on the same articles and tokens (resampled_perplexities).
    """
    both = resampled_perplexities([student, teacher], resamples, seed)
    lo, hi = interval(both[:, 0] / both[:, 1], level)
    return student.perplexity / teacher.perplexity, lo, hi
