"""How sure is the leaderboard's order? Paired multi-bootstrap intervals over validation examples and
fine-tuning seeds, and chance levels, computed from the validation predictions every row saves
(`<row>/predictions/<task><suffix>-seed<s>.parquet`, distil.evaluation.finetune.predictions_frame's
columns: idx, label, prediction; multi-label: label = the true class ids, probability = one probability
per label).

Method: a multi-bootstrap (Sellam et al. 2022, "The MultiBERTs: BERT reproductions for robustness
analysis", ICLR: resample the test examples and the training seeds together) on top of the paired
bootstrap over test examples used to compare NLP systems (Efron & Tibshirani 1993, ch. 13, percentile
interval; Koehn 2004; Berg-Kirkpatrick et al. 2012). On each of `resamples` resamples:

  * examples: each split's N examples are drawn with replacement once, the same draws for every model
    (paired: every model is scored on the same seeded validation sample);
  * seeds: per model, its fine-tuning seeds of each task are drawn with replacement from the seeds that
    task ran (independently per model and per task: a seed is one fine-tuning run; the splits of one
    task, mnli_m and mnli_mm, share the draw because one run predicts both). A row distilled more than
    once is resampled in two stages (hierarchical data: Davison & Hinkley 1997, sec. 3.8; Field & Welsh
    2007): its distillation runs with replacement first (one draw per model, shared by all its tasks:
    one run is one checkpoint), then the seeds within each drawn run;
  * every metric is recomputed on the drawn examples (MCC, F1, Pearson, Spearman and ROC AUC are not
    means over examples), a model's split score is the mean of its drawn runs' means of drawn seeds,
    task and macro scores follow the leaderboard's conventions (distil.evaluation.scores.macro_score,
    tasks_macro), and a statistic of two models (a difference, a ratio) is taken within the resample.

The 95 % interval is the 2.5th to 97.5th percentile of that statistic over the resamples.

Small samples. A bootstrap over n seeds has variance (n-1)/n times the usual unbiased one and n^n
equally likely draws (10 distinct means for n = 3): it understates the seed noise it resamples
(Hesterberg 2015, "What teachers should know about the bootstrap", Am. Stat. 69(4), "narrowness
bias"). As with modified residuals (Davison & Hinkley 1997, ch. 6: residuals over sqrt(1 - h), h = 1/n
for a mean), each drawn seed's deviation from the mean of its run's seeds is scaled by sqrt(n/(n-1)),
so the seed stage's bootstrap variance is the unbiased s^2/n; the continuous example draws smooth its
discreteness. With R >= 2 distillation runs the run-level deviations are scaled by sqrt(R/(R-1) *
sigma_run^2 / S_B^2), where S_B^2 is the variance of the run means and sigma_run^2 = max(S_B^2 - S_W^2
mean(1/n_r), 0) its one-way ANOVA between-run component (S_W^2 the pooled within-run variance), so the
two stages together have the unbiased variance sigma_run^2 / R + S_W^2 mean(1/n_r) / R of the mean
over runs (derived here; an unscaled two-stage bootstrap counts the within-run variance twice). Both
scalings are computed on the full sample and are linear in the seeds' scores: a resample's split score
is w @ x, x the S prediction sets' scores on the drawn examples, w (S,) weights summing to 1
(`seed_weights`). Measured on simulated sweeps (tests/test_intervals.py, and the measurement page
docs/measurements/2026-12-03-interval-coverage.md): the interval of a known difference covers it in
94-97 % of 500 sweeps with 3 and with 5 seeds (over examples only, as before issue 22: about 80 % with 3).

The part of the noise where seeds disagree on single examples is in both stages (it moves a seed's
score, and the example draws move it again), so the interval is conservative when a model's seeds
disagree on many examples: about 97 % coverage at 11 % / 26 % disagreement on sst2 / rte (the measurement
page). What it does not cover: a task fine-tuned on one seed contributes no seed noise (nothing to
resample: its weight is 1); a row distilled once contributes no distillation-run noise; and nothing
here corrects for choosing the best of many candidates on the same data (the confirmation stage does:
fresh runs on rows the search never ranked on, distil.evaluation.confirmation).

Runs on disk. Today every row is distilled once and saves `predictions/<column>-seed<s>.parquet`. A row
distilled R times (e.g. a confirmation stage's reruns of a candidate) saves each run's predictions in
its own folder, `predictions/run<r>/<column>-seed<s>.parquet` (r = 0, 1, ...; the same file names and
columns), with the seeds of each run in it; files directly in predictions/ count as one more run. Its
full-sample split score is the mean over runs of each run's mean over seeds, which is what its
result.json must hold for the leaderboard to give it intervals (`resampled_columns` with resamples=0).

Splits and draws are seeded so they do not depend on which rows a results dir holds: a split's
examples from numpy's default_rng([seed, position of the split's column]) (GLUE's columns in GLUE order,
then the spec's own tasks' in declaration order); a model's runs from default_rng([seed, 1,
crc32(model)]) and its seeds of a task from default_rng([seed, 2, crc32(model), crc32(task)]).

A resample of examples is held as a count matrix W (B, N): W[b, i] = how often example i was drawn, so
that every metric is a few matrix products over all models at once (`resampled_metric`). The tasks are
distil.config.tasks.Task rows: GLUE's (distil.config.glue.TASKS) and the spec's own (multi-class,
multi-label), whose problem type, metrics and threshold say how each split is scored.
"""

from __future__ import annotations

import re
import zlib
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
_RUN_DIR = re.compile(r"^run(?P<run>\d+)$")


def task_columns(tasks=()) -> dict[str, Task]:
    """Leaderboard split column -> its Task: GLUE's (cola -> cola, mnli_m -> mnli) in GLUE order,
    then those of `tasks` (the spec's own, distil.config.tasks.Task) in their order."""
    return {t.name + suffix: t for t in [*TASKS.values(), *tasks] for suffix in t.eval_splits}


@dataclass
class Split:
    """One validation split as every model saw it, in `idx` order: labels (N,) class ids or
    floats, or (N, L) 0/1 for a multi-label task; each model's predictions (S, N) for its S
    prediction sets (fine-tuning seeds, of every distillation run), or (S, N, L) probabilities for a
    multi-label task, aligned to the same examples. `runs`: {model: (S,) int, the distillation run of
    each prediction set}; a model not in it has one run. `task`: the Task that scores it (default: the
    GLUE task of `column`); `position`: the column's place among all columns, which seeds its
    resamples (default: its GLUE place)."""

    column: str
    idx: np.ndarray
    labels: np.ndarray
    preds: dict[str, np.ndarray] = field(default_factory=dict)
    task: Task | None = None
    position: int | None = None
    runs: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self):
        if self.task is None:
            self.task = task_columns()[self.column]
        if self.position is None:
            self.position = list(task_columns()).index(self.column)

    def runs_of(self, model: str) -> np.ndarray:
        """(S,) distillation run of each of `model`'s prediction sets (all 0: one run)."""
        return np.asarray(self.runs.get(model, np.zeros(len(self.preds[model]), dtype=int)))


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


def _prediction_files(predictions_dir: Path, columns) -> list[tuple[str, int, int, Path]]:
    """(column, run, seed, file) of a row's prediction files of `columns`, sorted: the files directly
    in predictions/ are one run, each `run<r>/` folder another (module docstring); runs are numbered
    0, 1, ... in that order (flat files first, then by r)."""
    folders = sorted((int(m["run"]), d) for d in predictions_dir.glob("run*")
                     if d.is_dir() and (m := _RUN_DIR.match(d.name)))
    found = []
    for run, folder in enumerate([predictions_dir] * any(predictions_dir.glob("*.parquet")) + [d for _, d in folders]):
        found += [(m["column"], run, int(m["seed"]), f) for f in folder.glob("*.parquet")
                  if (m := _FILE.match(f.name)) and m["column"] in columns]
    return sorted(found, key=lambda p: p[:3])


def load_splits(row_dirs: dict[str, Path], tasks=()) -> tuple[dict[str, Split], dict[str, str]]:
    """Read every row's saved predictions and align them by `idx`.

    row_dirs: model name -> its row dir (holding predictions/, with a `run<r>/` folder per
    distillation run when it was distilled more than once); tasks: the spec's own tasks
    (distil.config.tasks.Task; GLUE's are always known). Files of other columns are ignored. The
    first row that has a split fixes its examples and labels; a row whose examples or labels on that
    split differ is left out. Returns ({column: Split}, {model: why it was left out}); a row
    without predictions/ is left out.
    """
    cols = task_columns(tasks)
    position = {c: i for i, c in enumerate(cols)}
    splits: dict[str, Split] = {}
    problems: dict[str, str] = {}
    for model, row_dir in row_dirs.items():
        parsed = _prediction_files(RowDir(row_dir, "row").predictions_dir, cols)
        if not parsed:
            problems[model] = "no saved predictions"
            continue
        per_column: dict[str, list] = {}
        for column, run, seed, f in parsed:
            per_column.setdefault(column, []).append((run, _read(f, cols[column])))
        for column, files in per_column.items():
            split = splits.get(column)
            if split is None:
                first = files[0][1]
                split = splits[column] = Split(column, first[0], first[1], task=cols[column], position=position[column])
            if not all(np.array_equal(idx, split.idx) and np.array_equal(y, split.labels) for _, (idx, y, _) in files):
                problems[model] = f"its {column} predictions cover other examples or labels than the other rows'"
                continue
            split.preds[model] = np.stack([p for _, (_, _, p) in files])
            split.runs[model] = np.array([run for run, _ in files])
    for split in splits.values():
        for model in problems:
            split.preds.pop(model, None)
            split.runs.pop(model, None)
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
def cell_scores(split: Split, W: np.ndarray) -> dict[str, np.ndarray]:
    """{model: (B, S) score of each of its S prediction sets on each resample of W (B, N)}: the mean
    of the task's metrics (×100)."""
    models = list(split.preds)
    P = np.concatenate([split.preds[m] for m in models])
    score = np.mean([resampled_metric(name, W, split.labels, P, split.task.threshold) for name in split.task.metrics],
                    axis=0)
    out, at = {}, 0
    for m in models:
        s = len(split.preds[m])
        out[m] = score[:, at:at + s]
        at += s
    return out


def mean_weights(runs: np.ndarray) -> np.ndarray:
    """(S,) weights of the full-sample score of S prediction sets with distillation runs `runs` (S,):
    the mean over runs of each run's mean over its seeds (1/S each with one run)."""
    _, inverse, n = np.unique(runs, return_inverse=True, return_counts=True)
    return 1.0 / (len(n) * n[inverse])


def _run_scale(full: np.ndarray, inverse: np.ndarray, n: np.ndarray) -> float:
    """Scale of the run-level deviations (module docstring): sqrt(R/(R-1) · sigma_run² / S_B²) from
    the full-sample scores `full` (S,) of R runs (`inverse` (S,): run index, `n` (R,): seeds per run);
    0 with one run, or when the run means do not vary more than their seeds explain."""
    R = len(n)
    if R < 2 or not np.isfinite(full).all():
        return 0.0
    means = np.bincount(inverse, full) / n
    between = means.var(ddof=1)
    dof = int((n - 1).sum())
    within = ((full - means[inverse]) ** 2).sum() / dof if dof else 0.0
    component = max(between - within * np.mean(1 / n), 0.0)
    return float(np.sqrt(R / (R - 1) * component / between)) if between > 0 else 0.0


def seed_weights(runs: np.ndarray, full: np.ndarray, resamples: int, run_rng: np.random.Generator,
                 seed_rng: np.random.Generator) -> np.ndarray:
    """(resamples, S) weights w of one model's S prediction sets on one split: on resample b its split
    score is w[b] @ x[b], x[b] (S,) the sets' scores on that resample's examples. Each row sums to 1.

    runs: (S,) the distillation run of each set; full: (S,) their full-sample scores (for the run
    scale; unused, may be None, with one run). Stage 1 draws R runs with replacement (a[b, r] = times
    run r is drawn; run_rng: shared by every task of the model, so the same runs are drawn on every
    task; with one run nothing is drawn); stage 2 draws, for each drawn
    run, its n_r seeds with replacement (Q[b, s] = times seed s is drawn over the a[b, r] draws of its
    run; seed_rng: one per model and task). With c_a = `_run_scale` and c_e = sqrt(n_r / (n_r - 1)) (1
    for a single seed), the weight of seed s of run r is

        w[b, s] = (1 + c_a · (a[b, r] - 1) + c_e · (Q[b, s] - a[b, r])) / (R · n_r),

    i.e. the mean over runs of the seeds' mean, plus the drawn runs' deviations (scaled by c_a), plus
    the drawn seeds' deviations from their run's mean (scaled by c_e). One run of one seed: w = 1."""
    _, inverse, n = np.unique(runs, return_inverse=True, return_counts=True)
    R = len(n)
    a = _draw_counts(run_rng, np.full(resamples, R), R) if R > 1 else np.ones((resamples, 1))  # (B, R)
    c_a = _run_scale(np.asarray(full, dtype=float), inverse, n) if R > 1 else 0.0
    w = np.empty((resamples, len(runs)))
    for r in range(R):
        cells = inverse == r
        Q = _draw_counts(seed_rng, a[:, r] * n[r], n[r])  # (B, n_r)
        c_e = np.sqrt(n[r] / (n[r] - 1)) if n[r] > 1 else 1.0
        drawn = a[:, r:r + 1]
        w[:, cells] = (1 + c_a * (drawn - 1) + c_e * (Q - drawn)) / (R * n[r])
    return w


def _draw_counts(rng: np.random.Generator, draws: np.ndarray, k: int) -> np.ndarray:
    """(B, k) counts of draws[b] uniform draws with replacement from k items, for each b (B,)."""
    width = int(draws.max()) if len(draws) else 0
    picks = rng.integers(0, k, size=(len(draws), width))
    picks[np.arange(width) >= draws[:, None]] = k  # beyond row b's draws: counted in a dropped column
    return (picks[:, :, None] == np.arange(k)).sum(1).astype(float)


def draw_generators(seed: int, model: str, task: Task) -> tuple[np.random.Generator, np.random.Generator]:
    """(run_rng, seed_rng) of `model` on `task` (module docstring): keyed by names, not by which rows
    or tasks a results dir holds, so a model's draws are the same in every leaderboard it is in."""
    key = zlib.crc32(model.encode())
    return np.random.default_rng([seed, 1, key]), np.random.default_rng([seed, 2, key, zlib.crc32(task.name.encode())])


def resampled_columns(splits: dict[str, Split], resamples: int = RESAMPLES,
                      seed: int = SEED) -> dict[str, dict[str, np.ndarray]]:
    """{model: {column: (resamples,) split score}}: the multi-bootstrap (module docstring);
    resamples=0 gives the full-sample score (mean over runs of the mean over seeds), (1,) each.

    Each split draws its examples from numpy's default_rng([seed, split.position]) (its column's place
    among GLUE's and the spec's own columns), in blocks of at most ~4e6 counts, the same draws for
    every model; each model draws its runs and seeds with `draw_generators` and `seed_weights`."""
    out: dict[str, dict[str, np.ndarray]] = {}
    for column, split in splits.items():
        n = len(split.idx)
        reruns = any(len(np.unique(split.runs_of(m))) > 1 for m in split.preds)
        full = cell_scores(split, np.ones((1, n))) if resamples == 0 or reruns else {}
        if resamples == 0:
            for model, x in full.items():
                out.setdefault(model, {})[column] = x @ mean_weights(split.runs_of(model))
            continue
        weights = {m: seed_weights(split.runs_of(m), full[m][0] if m in full else None, resamples,
                                   *draw_generators(seed, m, split.task))
                   for m in split.preds}
        rng = np.random.default_rng([seed, split.position])
        size = max(1, _CHUNK_ELEMENTS // n)
        parts = []
        for at in range(0, resamples, size):
            cells = cell_scores(split, resample_counts(n, min(size, resamples - at), rng))
            parts.append({m: np.einsum("bs,bs->b", weights[m][at:at + len(x)], x) for m, x in cells.items()})
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
