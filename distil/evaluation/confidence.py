"""How sure is the leaderboard's order? Paired bootstrap intervals and chance levels, computed from
the validation predictions every row saves (`<row>/predictions/<task><suffix>-seed<s>.parquet`,
distil.evaluation.finetune.predictions_frame's columns: idx, label, prediction; multi-label: label = the
true class ids, probability = one probability per label).

Method: the paired (non-parametric) bootstrap over test examples used to compare NLP systems
(Efron & Tibshirani 1993, ch. 13, percentile interval; Koehn 2004; Berg-Kirkpatrick et al. 2012).
Every model is scored on the same seeded validation sample of a split, so for each split we draw
`resamples` resamples of its N examples with replacement, the same draws for every model; on each
resample every metric is recomputed (MCC, F1, Pearson, Spearman and ROC AUC are not means over
examples), a model's split score is the mean over its fine-tuning seeds, its task and macro scores
follow the leaderboard's conventions (`distil.evaluation.scores.macro_score`, `tasks_macro`), and a
statistic of two models (a difference, a ratio) is taken within each resample. The 95 % interval
is the 2.5th to 97.5th percentile of that statistic over the resamples. Splits are resampled
independently of one another, each from its own seeded numpy generator (`seed`, position of the
split's column: GLUE's columns in GLUE order, then the spec's own tasks' in declaration order),
so the draws do not depend on which rows a results dir holds.

Seed noise is inside the interval only as far as a model's seeds were averaged: a single-seed
split's fine-tuning luck is not resampled (nothing to resample it from).

A resample is held as a count matrix W (B, N): W[b, i] = how often example i was drawn, so that
every metric is a few matrix products over all models at once (`resampled_metric`). The tasks
are distil.config.tasks.Task rows: GLUE's (distil.config.glue.TASKS) and the spec's own (multi-class,
multi-label), whose problem type, metrics and threshold say how each split is scored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq

from distil.config.glue import TASKS
from distil.config.tasks import MULTI, REGRESSION, Task
from distil.evaluation import metrics as glue_metrics
from distil.store.records import RowDir

RESAMPLES = 1000
SEED = 0
LEVEL = 0.95
_CHUNK_ELEMENTS = 4_000_000  # (resamples x examples) per block: bounds memory at ~100 MB for qqp/mnli
_FILE = re.compile(r"^(?P<column>.+)-seed(?P<seed>\d+)\.parquet$")


def task_columns(tasks=()) -> dict[str, Task]:
    """Leaderboard split column -> its Task: GLUE's (cola -> cola, mnli_m -> mnli) in GLUE order,
    then those of `tasks` (the spec's own, distil.config.tasks.Task) in their order."""
    return {t.name + suffix: t for t in [*TASKS.values(), *tasks] for suffix in t.eval_splits}


@dataclass
class Split:
    """One validation split as every model saw it, in `idx` order: labels (N,) class ids or
    floats, or (N, L) 0/1 for a multi-label task; each model's predictions (S, N) for its S
    fine-tuning seeds, or (S, N, L) probabilities for a multi-label task, aligned to the same
    examples. `task`: the Task that scores it (default: the GLUE task of `column`); `position`:
    the column's place among all columns, which seeds its resamples (default: its GLUE place)."""

    column: str
    idx: np.ndarray
    labels: np.ndarray
    preds: dict[str, np.ndarray] = field(default_factory=dict)
    task: Task | None = None
    position: int | None = None

    def __post_init__(self):
        if self.task is None:
            self.task = task_columns()[self.column]
        if self.position is None:
            self.position = list(task_columns()).index(self.column)


def _read(path: Path, task: Task) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(idx, labels, predictions) of one predictions file, sorted by idx. Multi-label: labels
    (N, L) 0/1 from the lists of true class ids, predictions (N, L) float64 probabilities."""
    multi = task.problem_type == MULTI
    table = pq.read_table(path, columns=["idx", "label", "probability" if multi else "prediction"])
    idx = table.column("idx").to_numpy()
    order = np.argsort(idx, kind="stable")
    if not multi:
        return idx[order], table.column("label").to_numpy().astype(float)[order], \
            table.column("prediction").to_numpy().astype(float)[order]
    label = table.column("label").combine_chunks()
    truth = np.zeros((len(idx), task.num_labels))
    truth[pc.list_parent_indices(label).to_numpy(), pc.list_flatten(label).to_numpy()] = 1.0
    probs = pc.list_flatten(table.column("probability").combine_chunks()).to_numpy().astype(np.float64)
    return idx[order], truth[order], probs.reshape(len(idx), task.num_labels)[order]


def load_splits(row_dirs: dict[str, Path], tasks=()) -> tuple[dict[str, Split], dict[str, str]]:
    """Read every row's saved predictions and align them by `idx`.

    row_dirs: model name -> its row dir (holding predictions/); tasks: the spec's own tasks
    (distil.config.tasks.Task; GLUE's are always known). Files of other columns are ignored. The first
    row that has a split fixes its examples and labels; a row whose examples or labels on that
    split differ is left out. Returns ({column: Split}, {model: why it was left out}); a row
    without predictions/ is left out.
    """
    cols = task_columns(tasks)
    position = {c: i for i, c in enumerate(cols)}
    splits: dict[str, Split] = {}
    problems: dict[str, str] = {}
    for model, row_dir in row_dirs.items():
        files = sorted(RowDir(row_dir, "row").predictions_dir.glob("*.parquet"))
        parsed = [(m["column"], int(m["seed"]), f) for f in files if (m := _FILE.match(f.name)) and m["column"] in cols]
        if not parsed:
            problems[model] = "no saved predictions"
            continue
        per_column: dict[str, list] = {}
        for column, seed, f in sorted(parsed, key=lambda p: (p[0], p[1])):
            per_column.setdefault(column, []).append(_read(f, cols[column]))
        for column, files in per_column.items():
            split = splits.get(column)
            if split is None:
                split = splits[column] = Split(column, files[0][0], files[0][1], task=cols[column],
                                               position=position[column])
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
    checked exactly: constant predictions give 0 (distil.evaluation.metrics' convention)."""
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


def _ranks(W: np.ndarray, x: np.ndarray, keep: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Average ranks (1-based, ties share the mean rank, as scipy.stats.rankdata) of the values
    x (N,) within each resample, where example i counts W[b, i] times: ((B, N) rank of each
    example, or (B, len(keep)) of the examples `keep` only; (B, U) draws per group of tied values)."""
    order = np.argsort(x, kind="stable")
    new = np.r_[True, x[order][1:] != x[order][:-1]]
    group = np.empty(len(x), dtype=int)
    group[order] = np.cumsum(new) - 1
    # No ties: the counts as drawn.
    counts = W[:, order] if new.all() else np.add.reduceat(W[:, order], np.flatnonzero(new), axis=1)
    at = group if keep is None else group[keep]
    return np.cumsum(counts, axis=1)[:, at] - (counts[:, at] - 1) / 2, counts


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
            out[:, m] = np.where(constant, 0.0,
                                 np.einsum("bn,bn->b", wdx, rp) / np.sqrt(vx * np.where(constant, 1, vp)))
    return out


def _f1_per_label(W: np.ndarray, Y: np.ndarray, P: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-label F1 of M 0/1 prediction sets on each resample: ((B, M, L) F1, (B, L) true count).

    Y: (N, L) 0/1 truth; P: (M, N, L) 0/1 predictions. Counts are sums of W over examples
    (tp = W @ (P·Y), predicted = W @ P, true = W @ Y); F1 = 2tp / (predicted + true), 0 where
    both are 0 (scikit-learn's zero_division=0)."""
    M, N, L = P.shape
    true = W @ Y

    def flat(X: np.ndarray) -> np.ndarray:
        """(M, N, L) -> (N, M·L), for one product."""
        return X.transpose(1, 0, 2).reshape(N, M * L)

    tp = (W @ flat(P * Y[None])).reshape(len(W), M, L)
    predicted = (W @ flat(P)).reshape(len(W), M, L)
    den = predicted + true[:, None, :]
    return np.divide(2 * tp, den, out=np.zeros_like(den), where=den > 0), true


def _macro_f1(W: np.ndarray, Y: np.ndarray, P: np.ndarray) -> np.ndarray:
    """(B, M) mean F1 over the labels with a true example in the resample (distil.evaluation.metrics'
    macro_f1: absent labels are left out; NaN when none is present)."""
    f1, true = _f1_per_label(W, Y, P)
    present = (true > 0)[:, None, :]
    with np.errstate(invalid="ignore"):
        return (f1 * present).sum(-1) / present.sum(-1)


def _micro_f1(W: np.ndarray, Y: np.ndarray, P: np.ndarray) -> np.ndarray:
    """(B, M) F1 of the pooled (example, label) decisions: 2·TP / (2·TP + FP + FN), 0 when there
    is no positive at all (scikit-learn's average="micro", zero_division=0)."""
    tp = W @ (P * Y[None]).sum(-1).T
    den = W @ P.sum(-1).T + (W @ Y.sum(-1))[:, None]  # predicted + true positives = 2·TP + FP + FN
    return np.divide(2 * tp, den, out=np.zeros_like(den), where=den > 0)


def _roc_auc(W: np.ndarray, Y: np.ndarray, S: np.ndarray) -> np.ndarray:
    """(B, M) mean over labels of ROC AUC, as distil.evaluation.metrics' roc_auc: labels with both a positive
    and a negative example in the resample only, NaN when none has both.

    Per label, the Mann-Whitney form of the AUC (Hanley & McNeil 1982): with the resample's
    average ranks r of the scores (ties share their mean rank, so a tie counts 1/2),
    AUC = (Σ_pos W_i·r_i − n₊(n₊ + 1)/2) / (n₊·n₋), n₊/n₋ the drawn positives/negatives.
    Y: (N, L) 0/1 truth; S: (M, N, L) scores (probabilities)."""
    n = W.sum(1)
    pos_n = W @ Y  # (B, L)
    neg_n = n[:, None] - pos_n
    valid = (pos_n > 0) & (neg_n > 0)
    out = np.empty((len(W), len(S)))
    for m, scores in enumerate(S):
        auc = np.zeros((len(W), Y.shape[1]))
        for label in np.flatnonzero(valid.any(0)):
            pos = np.flatnonzero(Y[:, label])
            rank, _ = _ranks(W, scores[:, label], keep=pos)
            u = np.einsum("bp,bp->b", W[:, pos], rank) - pos_n[:, label] * (pos_n[:, label] + 1) / 2
            with np.errstate(invalid="ignore", divide="ignore"):
                auc[:, label] = u / (pos_n[:, label] * neg_n[:, label])
        with np.errstate(invalid="ignore"):
            out[:, m] = np.where(valid, auc, 0).sum(1) / valid.sum(1)
    return out


def _one_hot(y: np.ndarray, classes: np.ndarray) -> np.ndarray:
    return (np.asarray(y)[..., None] == classes).astype(float)


def resampled_metric(metric: str, W: np.ndarray, labels: np.ndarray, preds: np.ndarray,
                     threshold: float = 0.5) -> np.ndarray:
    """One metric ×100 of M prediction sets on B resamples: (B, M).

    W: (B, N) draw counts (`resample_counts`; all ones = the full sample); labels: (N,), or (N, L)
    0/1 for a multi-label task; preds: (M, N) class ids (floats for pearson/spearmanr), or
    (M, N, L) probabilities for a multi-label task (thresholded at `threshold` for the F1s, as
    distil.evaluation.finetune.score_predictions). Equals distil.evaluation.metrics.compute on each resample
    (tests/test_confidence.py), with its conventions: MCC, Pearson and Spearman are 0 where the
    predictions are constant (or MCC's denominator is 0), F1 is 0 with no positives, macro_f1 and
    roc_auc average over the labels present in the resample; correlations with constant labels
    are NaN, as in scipy. A metric without a vectorised form here is computed resample by
    resample with distil.evaluation.metrics.compute (slow, exact).
    """
    y, P = labels, preds
    n = W.sum(1, keepdims=True)
    if y.ndim == 2:  # multi-label
        if metric == "roc_auc":
            return 100 * _roc_auc(W, y, P)
        hits = (P >= threshold).astype(float)
        if metric == "micro_f1":
            return 100 * _micro_f1(W, y, hits)
        if metric == "macro_f1":
            return 100 * _macro_f1(W, y, hits)
    elif metric == "macro_f1":  # multi-class: the per-class F1s of one-hot indicators
        classes = np.unique(y)
        return 100 * _macro_f1(W, _one_hot(y, classes), _one_hot(P, classes))
    if metric == "accuracy":
        return 100 * (W @ (P == y).T) / n
    if metric == "f1":  # positive class 1, as distil.evaluation.metrics
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
        scored = P if y.ndim == 1 or metric == "roc_auc" else (P >= threshold).astype(float)
        out[b] = [glue_metrics.compute(metric, y[take], pm[take]) for pm in scored]
    return out


# ---------------------------------------------------------------- scores, intervals, chance
def split_scores(split: Split, W: np.ndarray) -> dict[str, np.ndarray]:
    """{model: (B,) split score}: mean of the task's metrics, then mean over the model's seeds."""
    models = list(split.preds)
    P = np.concatenate([split.preds[m] for m in models])
    score = np.mean([resampled_metric(name, W, split.labels, P, split.task.threshold) for name in split.task.metrics],
                    axis=0)
    out, at = {}, 0
    for m in models:
        s = len(split.preds[m])
        out[m] = score[:, at:at + s].mean(1)
        at += s
    return out


def resampled_columns(splits: dict[str, Split], resamples: int = RESAMPLES,
                      seed: int = SEED) -> dict[str, dict[str, np.ndarray]]:
    """{model: {column: (resamples,) split score}}; resamples=0 gives the full sample, (1,) each.

    Each split draws from numpy's default_rng([seed, split.position]) (its column's place among
    GLUE's and the spec's own columns), in blocks of at most ~4e6 counts, the same draws for
    every model."""
    out: dict[str, dict[str, np.ndarray]] = {}
    for column, split in splits.items():
        n = len(split.idx)
        if resamples == 0:
            blocks = [np.ones((1, n))]
        else:
            rng = np.random.default_rng([seed, split.position])
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
    of two models' scores (macro_score, tasks_macro, a task's score): gain over a reference row,
    delta vs the paper defaults, % of teacher."""
    if how == "difference":
        return interval(a - b, level)
    if how == "percent":
        return interval(100 * a / b, level)
    raise ValueError(f"paired_interval: how={how!r}; use 'difference' or 'percent'")


def p_best(macros: np.ndarray) -> np.ndarray:
    """(R,) share of resamples in which each of R models has the highest score; macros (B, R)
    (the leaderboard passes the score it ranks by).
    A tie for first shares the resample equally."""
    best = macros == macros.max(1, keepdims=True)
    return (best / best.sum(1, keepdims=True)).mean(0)


def constant_prediction(labels: np.ndarray, regression: bool) -> np.ndarray:
    """The majority-class prediction for every example (ties: the smaller class id), or, for a
    regression task, the mean label (scored 0: constant). Multi-label (labels (N, L)): each
    label's majority, (N, L) 0/1, which is all-negative when every label is on in at most half
    the rows (GoEmotions: the most frequent, neutral, is on in ~1/3); as scores it is constant,
    so its ROC AUC is 50."""
    if regression:
        return np.full(len(labels), labels.mean())
    if labels.ndim == 2:
        return np.tile((labels.mean(0) > 0.5).astype(float), (len(labels), 1))
    values, counts = np.unique(labels, return_counts=True)
    return np.full(len(labels), values[np.argmax(counts)])


def chance_scores(splits: dict[str, Split]) -> dict[str, float]:
    """{column: score of the constant majority-class prediction} (stsb: 0; multi-label: each
    label's majority, see constant_prediction), with the same metrics and conventions as every
    model's score on that split (distil.evaluation.metrics.compute)."""
    out = {}
    for column, split in splits.items():
        const = constant_prediction(split.labels, split.task.problem_type == REGRESSION)
        out[column] = float(np.mean([glue_metrics.compute(m, split.labels, const) for m in split.task.metrics]))
    return out


def chance_rule(split: Split) -> str:
    """What the chance prediction of `split` is, in words (for the leaderboard's notes)."""
    if split.task.problem_type == REGRESSION:
        return "the mean label (a constant: 0)"
    const = constant_prediction(split.labels, False)
    if split.labels.ndim == 1:
        return f"always class {int(const[0])}"
    on = np.flatnonzero(const[0])
    return "all-negative: no label is on in more than half the rows" if not len(on) else \
        f"each label's majority: labels {', '.join(map(str, on))} always on, the rest off"
