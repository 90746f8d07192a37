"""GLUE metrics (Wang et al. 2019, Table 1), from scikit-learn and scipy, reported ×100 as on the leaderboard."""

from __future__ import annotations

import numpy as np
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef


def _correlation(fn):
    """A scipy correlation that is 0 for constant predictions (undefined there: scipy gives NaN),
    the convention scikit-learn uses for MCC, so a collapsed stsb model scores 0, not NaN."""
    return lambda y, p: 0.0 if np.ptp(p) == 0 else fn(y, p)[0]


_METRICS = {
    "mcc": lambda y, p: matthews_corrcoef(y, p),
    "accuracy": lambda y, p: accuracy_score(y, p),
    "f1": lambda y, p: f1_score(y, p),  # positive class 1 (mrpc: equivalent, qqp: duplicate)
    "pearson": _correlation(pearsonr),
    "spearmanr": _correlation(spearmanr),
}


def compute(metric: str, labels: np.ndarray, predictions: np.ndarray) -> float:
    """One GLUE metric ×100. labels/predictions: (N,) class ids, or floats for stsb's pearson/spearmanr.
    Constant predictions score 0 on mcc, pearson and spearmanr.

    Raises:
        KeyError: unknown metric name.
    """
    return 100.0 * float(_METRICS[metric](np.asarray(labels), np.asarray(predictions)))
