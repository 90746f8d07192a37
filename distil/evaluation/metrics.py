"""Task metrics from scikit-learn and scipy, reported ×100 as on the leaderboard.

GLUE's (Wang et al. 2019, Table 1): mcc, accuracy, f1 (binary, class 1), pearson, spearmanr.
Multi-class: accuracy and macro_f1. Multi-label (labels are (N, L) 0/1 indicator matrices):
micro_f1 and macro_f1 on thresholded predictions, and roc_auc, the mean per-label ROC AUC on the
probabilities (the metric of the Jigsaw toxic-comment challenge; GoEmotions reports the F1s).

Labels absent from the scored rows (a small eval sample, a bootstrap resample): a label's F1
and ROC AUC need at least one true positive example (ROC AUC also a negative one), so
`macro_f1` and `roc_auc` average over the labels present in `labels` only; the absent labels'
false positives still count in `micro_f1`, and a single-label prediction of an absent class
still lowers its true class's recall. With no label present the value is NaN (undefined), not 0.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef, roc_auc_score


def _correlation(fn):
    """A scipy correlation that is 0 for constant predictions (undefined there: scipy gives NaN),
    the convention scikit-learn uses for MCC, so a collapsed stsb model scores 0, not NaN."""
    return lambda y, p: 0.0 if np.ptp(p) == 0 else fn(y, p)[0]


def _present(y: np.ndarray) -> np.ndarray:
    """Labels with at least one true example: class ids (y: (N,)) or columns (y: (N, L))."""
    return np.flatnonzero(y.sum(axis=0)) if y.ndim == 2 else np.unique(y)


def _macro_f1(y, p):
    labels = _present(y)
    return math.nan if len(labels) == 0 else f1_score(y, p, labels=labels, average="macro", zero_division=0.0)


def _mean_roc_auc(y, scores):
    """Mean over labels (columns) with both classes present of roc_auc_score(y[:, j], scores[:, j])."""
    cols = [j for j in range(y.shape[1]) if 0 < y[:, j].sum() < len(y)]
    return math.nan if not cols else float(np.mean([roc_auc_score(y[:, j], scores[:, j]) for j in cols]))


_METRICS = {
    "mcc": lambda y, p: matthews_corrcoef(y, p),
    "accuracy": lambda y, p: accuracy_score(y, p),
    "f1": lambda y, p: f1_score(y, p),  # positive class 1 (mrpc: equivalent, qqp: duplicate)
    "pearson": _correlation(pearsonr),
    "spearmanr": _correlation(spearmanr),
    "macro_f1": _macro_f1,
    "micro_f1": lambda y, p: f1_score(y, p, average="micro", zero_division=0.0),
    "roc_auc": _mean_roc_auc,
}


def compute(metric: str, labels: np.ndarray, predictions: np.ndarray) -> float:
    """One metric ×100.

    labels/predictions: (N,) class ids, or floats for pearson/spearmanr; for multi-label
    (micro_f1, macro_f1, roc_auc) (N, L) 0/1 label indicators and (N, L) 0/1 predictions, or for
    roc_auc (N, L) probabilities. macro_f1 takes either form. Constant predictions score 0 on mcc,
    pearson and spearmanr; see the module docstring for labels absent from `labels` (NaN if none
    is present).

    Raises:
        KeyError: unknown metric name.
    """
    return 100.0 * float(_METRICS[metric](np.asarray(labels), np.asarray(predictions)))
