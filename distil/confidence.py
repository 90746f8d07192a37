"""How sure is the leaderboard's order? Paired bootstrap intervals and chance levels, computed from
the validation predictions every row saves (`<row>/predictions/<task><suffix>-seed<s>.parquet`,
columns idx, label, prediction).

Method: the paired (non-parametric) bootstrap over test examples used to compare NLP systems
(Efron & Tibshirani 1993, ch. 13, percentile interval; Koehn 2004; Berg-Kirkpatrick et al. 2012).
Every model is scored on the same seeded validation sample of a split, so for each split we draw
`resamples` resamples of its N examples with replacement, the same draws for every model; on each
resample every metric is recomputed (MCC, F1, Pearson and Spearman are not means over examples),
a model's split score is the mean over its fine-tuning seeds, its task and macro scores follow
the leaderboard's conventions (`distil.leaderboard.macro_score`), and a statistic of two models
(a difference, a ratio) is taken within each resample. The 95 % interval is the 2.5th to 97.5th
percentile of that statistic over the resamples. Splits are resampled independently of one
another, each from its own seeded numpy generator (`seed`, split position), so the draws do not
depend on which rows a results dir holds.

Seed noise is inside the interval only as far as a model's seeds were averaged: a single-seed
split's fine-tuning luck is not resampled (nothing to resample it from).

A resample is held as a count matrix W (B, N): W[b, i] = how often example i was drawn, so that
every metric is a few matrix products over all models at once (`resampled_metric`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from distil import metrics as glue_metrics
from distil.glue import TASKS

RESAMPLES = 1000
SEED = 0
LEVEL = 0.95
_CHUNK_ELEMENTS = 4_000_000  # (resamples x examples) per block: bounds memory at ~100 MB for qqp/mnli
_FILE = re.compile(r"^(?P<column>.+)-seed(?P<seed>\d+)\.parquet$")


def _columns() -> dict[str, str]:
    """Leaderboard split column -> task name (cola -> cola, mnli_m -> mnli)."""
    return {t.name + suffix: t.name for t in TASKS.values() for suffix in t.eval_splits}


@dataclass
class Split:
    """One validation split as every model saw it: labels (N,) in `idx` order, and each model's
    predictions (S, N) for its S fine-tuning seeds, aligned to the same examples."""

    column: str
    idx: np.ndarray
    labels: np.ndarray
    preds: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def task(self):
        return TASKS[_columns()[self.column]]


def _stack(values: pd.Series) -> np.ndarray:
    """A parquet column as an array: (N,) for scalars, (N, L) for list cells (multi-label)."""
    first = values.iloc[0] if len(values) else 0
    return np.stack(values.to_numpy()) if isinstance(first, (list, np.ndarray)) else values.to_numpy()


def load_splits(row_dirs: dict[str, Path]) -> tuple[dict[str, Split], dict[str, str]]:
    """Read every row's saved predictions and align them by `idx`.

    row_dirs: model name -> its row dir (holding predictions/). The first row that has a split
    fixes its examples and labels; a row whose examples or labels on that split differ is left out.
    Returns ({column: Split}, {model: why it was left out}); a row without predictions/ is left out.
    """
    cols = _columns()
    splits: dict[str, Split] = {}
    problems: dict[str, str] = {}
    for model, row_dir in row_dirs.items():
        files = sorted(Path(row_dir, "predictions").glob("*.parquet"))
        parsed = [(m["column"], int(m["seed"]), f) for f in files if (m := _FILE.match(f.name)) and m["column"] in cols]
        if not parsed:
            problems[model] = "no saved predictions"
            continue
        per_column: dict[str, list] = {}
        for column, seed, f in sorted(parsed, key=lambda p: (p[0], p[1])):
            per_column.setdefault(column, []).append(pd.read_parquet(f).sort_values("idx"))
        for column, frames in per_column.items():
            split = splits.get(column)
            if split is None:
                first = frames[0]
                split = splits[column] = Split(column, first["idx"].to_numpy(), _stack(first["label"]).astype(float))
            aligned = [fr for fr in frames if np.array_equal(fr["idx"].to_numpy(), split.idx)
                       and np.array_equal(_stack(fr["label"]).astype(float), split.labels)]
            if len(aligned) < len(frames):
                problems[model] = f"its {column} predictions cover other examples or labels than the other rows'"
                continue
            split.preds[model] = np.stack([_stack(fr["prediction"]).astype(float) for fr in frames])
    for split in splits.values():
        for model in problems:
            split.preds.pop(model, None)
    return splits, problems


# ---------------------------------------------------------------- metrics over resamples
def resample_counts(n: int, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """(resamples, n) float counts: row b holds how often each of n examples was drawn (sum n)."""
    draws = rng.integers(0, n, size=(resamples, n)) + n * np.arange(resamples)[:, None]
    return np.bincount(draws.ravel(), minlength=resamples * n).reshape(resamples, n).astype(float)


def _correlation(W: np.ndarray, x: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Weighted Pearson r per resample. W (B, N) counts; x, p (N,) or (B, N) values. Centred
    before multiplying (two-pass) so that large offsets do not cancel."""
    n = W.sum(1, keepdims=True)
    dx = x - (W * x).sum(1, keepdims=True) / n
    dp = p - (W * p).sum(1, keepdims=True) / n
    den = np.sqrt((W * dx * dx).sum(1) * (W * dp * dp).sum(1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return (W * dx * dp).sum(1) / den


def _ranks(W: np.ndarray, x: np.ndarray) -> np.ndarray:
    """(B, N) average ranks (1-based, ties share the mean rank, as scipy.stats.rankdata) of the
    values x (N,) within each resample: example i drawn W[b, i] times counts W[b, i] times."""
    order = np.argsort(x, kind="stable")
    xs = x[order]
    starts = np.flatnonzero(np.r_[True, xs[1:] != xs[:-1]])
    group = np.empty(len(x), dtype=int)
    group[order] = np.cumsum(np.r_[True, xs[1:] != xs[:-1]]) - 1
    counts = np.add.reduceat(W[:, order], starts, axis=1)  # (B, U) draws per tied group
    rank = np.cumsum(counts, axis=1) - (counts - 1) / 2
    return rank[:, group]


def _constant(W: np.ndarray, p: np.ndarray) -> np.ndarray:
    """(B,) True where every drawn prediction is the same (correlations are 0 there by convention)."""
    drawn = W > 0
    return np.where(drawn, p, np.inf).min(1) == np.where(drawn, p, -np.inf).max(1)


def resampled_metric(metric: str, W: np.ndarray, labels: np.ndarray, preds: np.ndarray) -> np.ndarray:
    """One GLUE metric ×100 of M prediction sets on B resamples: (B, M).

    W: (B, N) draw counts (`resample_counts`; all ones = the full sample); labels: (N,);
    preds: (M, N) class ids, or floats for pearson/spearmanr. Equals distil.metrics.compute on
    each resample (tests/test_confidence.py), with its conventions: MCC, Pearson and Spearman are
    0 where the predictions are constant (or MCC's denominator is 0), F1 is 0 with no positives.
    A metric without a vectorised form here is computed resample by resample with
    distil.metrics.compute (slow, exact).
    """
    y, P = labels, preds
    n = W.sum(1, keepdims=True)
    if metric == "accuracy":
        return 100 * (W @ (P == y).T) / n
    if metric == "f1":  # positive class 1, as distil.metrics
        tp, fp, fn = (W @ m.T for m in ((P == 1) & (y == 1), (P == 1) & (y != 1), (P != 1) & (y == 1)))
        den = 2 * tp + fp + fn
        return 100 * np.divide(2 * tp, den, out=np.zeros_like(den), where=den > 0)
    if metric == "mcc":  # multiclass MCC from the confusion counts (Gorodkin 2004), as scikit-learn
        classes = np.unique(np.concatenate([y, P.ravel()]))
        t = W @ (y[:, None] == classes)  # (B, K) true counts
        p = (W @ (P.T[:, :, None] == classes).reshape(len(y), -1)).reshape(len(W), len(P), len(classes))
        c = W @ (P == y).T
        cov_tp = c * n - np.einsum("bk,bmk->bm", t, p)
        cov_pp = n**2 - (p**2).sum(-1)
        cov_tt = n**2 - (t**2).sum(-1, keepdims=True)
        den = cov_pp * cov_tt
        return 100 * np.divide(cov_tp, np.sqrt(np.maximum(den, 0)), out=np.zeros_like(cov_tp), where=den > 0)
    if metric in ("pearson", "spearmanr"):
        rank = metric == "spearmanr"
        x = _ranks(W, y) if rank else y
        out = np.empty((len(W), len(P)))
        for m, pm in enumerate(P):
            r = _correlation(W, x, _ranks(W, pm) if rank else pm)
            out[:, m] = np.where(_constant(W, pm), 0.0, r)
        return 100 * out
    out = np.empty((len(W), len(P)))
    for b, w in enumerate(W.astype(int)):
        take = np.repeat(np.arange(len(y)), w)
        out[b] = [glue_metrics.compute(metric, y[take], pm[take]) for pm in P]
    return out


# ---------------------------------------------------------------- scores, intervals, chance
def split_scores(split: Split, W: np.ndarray) -> dict[str, np.ndarray]:
    """{model: (B,) split score}: mean of the task's metrics, then mean over the model's seeds."""
    models = list(split.preds)
    P = np.concatenate([split.preds[m] for m in models])
    score = np.mean([resampled_metric(name, W, split.labels, P) for name in split.task.metrics], axis=0)
    out, at = {}, 0
    for m in models:
        s = len(split.preds[m])
        out[m] = score[:, at:at + s].mean(1)
        at += s
    return out


def resampled_columns(splits: dict[str, Split], resamples: int = RESAMPLES, seed: int = SEED) -> dict[str, dict[str, np.ndarray]]:
    """{model: {column: (resamples,) split score}}; resamples=0 gives the full sample, (1,) each.

    Each split draws from numpy's default_rng([seed, position of the split among all columns]),
    in blocks of at most ~4e6 counts, the same draws for every model."""
    position = {c: i for i, c in enumerate(_columns())}
    out: dict[str, dict[str, np.ndarray]] = {}
    for column, split in splits.items():
        n = len(split.idx)
        if resamples == 0:
            blocks = [np.ones((1, n))]
        else:
            rng = np.random.default_rng([seed, position[column]])
            size = max(1, _CHUNK_ELEMENTS // n)
            blocks = (resample_counts(n, min(size, resamples - at), rng) for at in range(0, resamples, size))
        parts = [split_scores(split, W) for W in blocks]
        for model in split.preds:
            out.setdefault(model, {})[column] = np.concatenate([p[model] for p in parts])
    return out


def interval(values: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    """Percentile interval (lo, hi) of a statistic's resampled values (B,)."""
    lo, hi = np.quantile(values, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def paired_interval(a: np.ndarray, b: np.ndarray, how: str = "difference", level: float = LEVEL) -> tuple[float, float]:
    """Interval of a − b ("difference", points) or 100·a/b ("percent") over paired resamples (B,)
    of two models' macro scores: gain over a reference row, delta vs the paper defaults, % of teacher."""
    if how == "difference":
        return interval(a - b, level)
    if how == "percent":
        return interval(100 * a / b, level)
    raise ValueError(f"paired_interval: how={how!r}; use 'difference' or 'percent'")


def p_best(macros: np.ndarray) -> np.ndarray:
    """(R,) share of resamples in which each of R models has the highest macro; macros (B, R).
    A tie for first shares the resample equally."""
    best = macros == macros.max(1, keepdims=True)
    return (best / best.sum(1, keepdims=True)).mean(0)


def constant_prediction(labels: np.ndarray, regression: bool) -> np.ndarray:
    """The majority-class prediction for every example (ties: the smaller class id; multi-label:
    each label's majority), or, for a regression task, the mean label (scored 0: constant)."""
    if regression:
        return np.full(len(labels), labels.mean())
    if labels.ndim == 2:
        return np.tile((labels.mean(0) > 0.5).astype(float), (len(labels), 1))
    values, counts = np.unique(labels, return_counts=True)
    return np.full(len(labels), values[np.argmax(counts)])


def chance_scores(splits: dict[str, Split]) -> dict[str, float]:
    """{column: score of the constant majority-class prediction} (stsb: 0), with the same metrics
    and conventions as every model's score on that split (distil.metrics.compute)."""
    out = {}
    for column, split in splits.items():
        const = constant_prediction(split.labels, split.task.num_labels == 1)
        out[column] = float(np.mean([glue_metrics.compute(m, split.labels, const) for m in split.task.metrics]))
    return out
