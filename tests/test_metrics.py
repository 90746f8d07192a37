import math

import numpy as np
import pytest

from distil.evaluation.metrics import compute


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


# Multi-label: 4 rows x 3 labels. Label 2 never occurs in `Y`: absent from the sample.
Y = np.array([[1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 0]])
P = np.array([[1, 0, 0], [0, 1, 1], [0, 1, 0], [1, 0, 0]])
S = np.array([[0.9, 0.2, 0.1], [0.4, 0.8, 0.7], [0.3, 0.6, 0.2], [0.5, 0.1, 0.3]])


def test_multi_label_f1s_on_a_hand_computed_case():
    # Totals over all labels, absent label 2 included: TP 3 (r0l0, r1l1, r2l1), FP 2 (r1l2, r3l0), FN 1 (r1l0).
    assert compute("micro_f1", Y, P) == pytest.approx(100 * 2 * 3 / (2 * 3 + 2 + 1))
    # Per present label: l0 TP 1 FP 1 FN 1 -> 1/2; l1 TP 2 -> 1. Label 2 (absent) is left out.
    assert compute("macro_f1", Y, P) == pytest.approx(100 * (0.5 + 1.0) / 2)


def test_mean_roc_auc_over_present_labels_on_a_hand_computed_case():
    # Label 0: positives {0.9, 0.4}, negatives {0.3, 0.5}: pairs won 0.9>0.3, 0.9>0.5, 0.4>0.3 -> 3/4.
    # Label 1: positives {0.8, 0.6}, negatives {0.2, 0.1}: 4/4. Label 2 has no positive: left out.
    assert compute("roc_auc", Y, S) == pytest.approx(100 * (0.75 + 1.0) / 2)


def test_ties_count_half_in_roc_auc_and_constant_scores_give_chance():
    y = np.array([[1], [0], [0]])
    assert compute("roc_auc", y, np.array([[0.5], [0.5], [0.1]])) == pytest.approx(100 * (0.5 + 1) / 2)
    assert compute("roc_auc", Y, np.zeros_like(S)) == pytest.approx(50.0)


def test_all_negative_predictions_score_zero_f1_and_no_present_label_is_nan():
    assert compute("micro_f1", Y, np.zeros_like(P)) == 0.0
    assert compute("macro_f1", Y, np.zeros_like(P)) == 0.0
    empty = np.zeros((3, 2), dtype=int)
    assert math.isnan(compute("macro_f1", empty, empty)) and math.isnan(compute("roc_auc", empty, np.ones((3, 2))))


def test_multi_class_macro_f1_on_a_hand_computed_case():
    y = np.array([0, 0, 1, 1, 2, 2])
    p = np.array([0, 1, 1, 1, 0, 3])  # class 3 never true: its prediction is an error, not a label
    # class 0: TP 1 FP 1 FN 1 -> 1/2; class 1: TP 2 FP 1 -> 4/5; class 2: TP 0 -> 0
    assert compute("macro_f1", y, p) == pytest.approx(100 * (0.5 + 0.8 + 0.0) / 3)
    assert compute("accuracy", y, p) == pytest.approx(100 * 3 / 6)
