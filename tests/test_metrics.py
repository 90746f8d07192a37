import math

import numpy as np
import pytest

from distil.metrics import compute


def test_accuracy_f1_and_mcc_on_a_hand_computed_case():
    y = np.array([1, 1, 1, 0, 0, 0])
    p = np.array([1, 1, 0, 0, 0, 1])  # TP=2 FN=1 TN=2 FP=1
    assert compute("accuracy", y, p) == pytest.approx(400 / 6)
    assert compute("f1", y, p) == pytest.approx(100 * 2 / 3)  # precision = recall = 2/3
    assert compute("mcc", y, p) == pytest.approx(100 * (2 * 2 - 1 * 1) / math.sqrt(3 * 3 * 3 * 3))


def test_mcc_is_zero_for_a_constant_predictor_and_100_for_perfect():
    y = np.array([0, 1, 0, 1, 1])
    assert compute("mcc", y, np.zeros(5, dtype=int)) == 0.0
    assert compute("mcc", y, y) == pytest.approx(100.0)


def test_pearson_and_spearman():
    y = np.array([0.0, 1.0, 2.0, 3.0, 4.0])
    assert compute("pearson", y, 2 * y + 1) == pytest.approx(100.0)
    assert compute("spearmanr", y, y**3) == pytest.approx(100.0)  # monotone, not linear
    assert compute("pearson", y, y**3) < 100.0
    assert compute("spearmanr", y, -y) == pytest.approx(-100.0)


def test_correlations_on_a_hand_computed_case_and_constant_predictions():
    y = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    p = np.array([2.0, 1.0, 4.0, 3.0, 5.0])  # sum of squared rank differences 4: 1 - 6*4/(5*24) = 0.8
    assert compute("spearmanr", y, p) == pytest.approx(80.0)
    assert compute("pearson", y, p) == pytest.approx(80.0)  # same here: values are their ranks
    assert compute("pearson", y, np.full(5, 2.5)) == 0.0  # undefined (NaN in scipy): 0, like MCC
    assert compute("spearmanr", y, np.full(5, 2.5)) == 0.0
