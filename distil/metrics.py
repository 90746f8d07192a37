"""GLUE metrics (Wang et al. 2019, Table 1), from scikit-learn and scipy, reported ×100 as on the leaderboard."""

from __future__ import annotations

import numpy as np
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

_METRICS = {
    "mcc": lambda y, p: matthews_corrcoef(y, p),
    "accuracy": lambda y, p: accuracy_score(y, p),
    "f1": lambda y, p: f1_score(y, p),  # positive class 1 (mrpc: equivalent, qqp: duplicate)
    "pearson": lambda y, p: pearsonr(y, p)[0],
    "spearmanr": lambda y, p: spearmanr(y, p)[0],
}


def compute(metric: str, labels: np.ndarray, predictions: np.ndarray) -> float:
    """One GLUE metric ×100. labels/predictions: (N,) class ids, or floats for stsb's pearson/spearmanr.

    Raises:
        KeyError: unknown metric name.
    """
    return 100.0 * float(_METRICS[metric](np.asarray(labels), np.asarray(predictions)))
