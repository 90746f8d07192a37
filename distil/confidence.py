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
import pyarrow as pa
import pyarrow.parquet as pq

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


def _read(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(idx, labels, predictions) of one predictions file, sorted by idx; a list column
    (multi-label) becomes (N, L)."""
    table = pq.read_table(path, columns=["idx", "label", "prediction"])
    idx = table.column("idx").to_numpy()
    order = np.argsort(idx, kind="stable")

    def array(name):
        col = table.column(name)
        values = np.stack(col.to_pylist()) if pa.types.is_list(col.type) else col.to_numpy()
        return np.asarray(values, dtype=float)[order]

    return idx[order], array("label"), array("prediction")


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
            per_column.setdefault(column, []).append(_read(f))
        for column, files in per_column.items():
            split = splits.get(column)
            if split is None:
                split = splits[column] = Split(column, files[0][0], files[0][1])
            if not all(np.array_equal(idx, split.idx) and np.array_equal(y, split.labels) for idx, y, _ in files):
                problems[model] = f"its {column} predictions cover other examples or labels than the other rows'"
                continue
            split.preds[model] = np.stack([p for _, _, p in files])
    for split in splits.values():
        for model in problems:
            split.preds.pop(model, None)
    return splits, problems


# ---------------------------------------------------------------- metrics over resamples
def resample_counts(n: int, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """(resamples, n) float counts: row b holds how often each of n examples was drawn (sum n)."""
    draws = rng.integers(0, n, size=(resamples, n)) + n * np.arange(resamples)[:, None]
    return np.bincount(draws.ravel(), minlength=resamples * n).reshape(resamples, n).astype(float)


def _pearson(W: np.ndarray, x: np.ndarray, P: np.ndarray) -> np.ndarray:
    """(B, M) Pearson r of labels x (N,) with each of P (M, N) on each resample of W (B, N), as
    matrix products of sums over the draws. Values are centred on their full-sample means first,
    so the resample sums do not cancel. Where a model's resampled variance is ~0 the resample is
    checked exactly: constant predictions give 0 (distil.metrics' convention)."""
    n = W.sum(1, keepdims=True)
    xc, Pc = x - x.mean(), P - P.mean(1, keepdims=True)
    sx, sxx = W @ xc, W @ xc**2
    sp, spp, sxp = W @ Pc.T, W @ (Pc**2).T, W @ (Pc * xc).T
    cov = sxp - sx[:, None] * sp / n
    vx, vp = sxx - sx**2 / n[:, 0], spp - sp**2 / n
    with np.errstate(invalid="ignore", divide="ignore"):
        r = cov / np.sqrt(vx[:, None] * vp)
    for b, m in np.argwhere(vp <= 1e-9 * spp):  # rare: a (nearly) constant model; decide exactly
        take = np.repeat(np.arange(len(x)), W[b].astype(int))
        r[b, m] = glue_metrics.compute("pearson", x[take], P[m][take]) / 100
    return r


def _ranks(W: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Average ranks (1-based, ties share the mean rank, as scipy.stats.rankdata) of the values
    x (N,) within each resample, where example i counts W[b, i] times: ((B, N) rank of each
    example, (B, U) draws per group of tied values)."""
    order = np.argsort(x, kind="stable")
    new = np.r_[True, x[order][1:] != x[order][:-1]]
    group = np.empty(len(x), dtype=int)
    group[order] = np.cumsum(new) - 1
    counts = np.add.reduceat(W[:, order], np.flatnonzero(new), axis=1)
    rank = np.cumsum(counts, axis=1) - (counts - 1) / 2
    return rank[:, group], counts


def _spearman(W: np.ndarray, x: np.ndarray, P: np.ndarray) -> np.ndarray:
    """(B, M) Spearman rho of x (N,) with each of P (M, N) on each resample: Pearson r of the
    resample's average ranks. The ranks' mean is (n+1)/2 and their sum of squares about it
    (n³ - n)/12 - Σ_ties (c³ - c)/12 (the tie correction, Kendall & Gibbons 1990, ch. 3), so each
    model costs one rank pass and one product. Constant predictions (one tied group) give 0."""
    n = W.sum(1)
    rx, cx = _ranks(W, x)
    wdx = W * (rx - (n[:, None] + 1) / 2)
    vx = (n**3 - n - (cx**3 - cx).sum(1)) / 12
    out = np.empty((len(W), len(P)))
    for m, p in enumerate(P):
        rp, cp = _ranks(W, p)
        vp = (n**3 - n - (cp**3 - cp).sum(1)) / 12
        constant = cp.max(1) == n
        with np.errstate(invalid="ignore", divide="ignore"):
            out[:, m] = np.where(constant, 0.0, np.einsum("bn,bn->b", wdx, rp) / np.sqrt(vx * np.where(constant, 1, vp)))
    return out


def resampled_metric(metric: str, W: np.ndarray, labels: np.ndarray, preds: np.ndarray) -> np.ndarray:
    """One GLUE metric ×100 of M prediction sets on B resamples: (B, M).

    W: (B, N) draw counts (`resample_counts`; all ones = the full sample); labels: (N,);
    preds: (M, N) class ids, or floats for pearson/spearmanr. Equals distil.metrics.compute on
    each resample (tests/test_confidence.py), with its conventions: MCC, Pearson and Spearman are
    0 where the predictions are constant (or MCC's denominator is 0), F1 is 0 with no positives;
    correlations with constant labels are NaN, as in scipy.
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
    if metric == "pearson":
        return 100 * _pearson(W, y, P)
    if metric == "spearmanr":
        return 100 * _spearman(W, y, P)
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
