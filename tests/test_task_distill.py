"""Task-specific distillation loss (Hinton et al. 2015 objective) against hand computations."""

import math

import pytest
import torch

from distil.evaluation.task_distill import task_kd_loss


def _softmax(xs):
    e = [math.exp(x) for x in xs]
    return [v / sum(e) for v in e]


def test_classification_mixes_kl_t2_and_cross_entropy():
    s, t, T, alpha = [2.0, 0.0], [0.0, 1.0], 2.0, 0.3
    p_t, p_s = _softmax([x / T for x in t]), _softmax([x / T for x in s])
    kl = sum(pt * (math.log(pt) - math.log(ps)) for pt, ps in zip(p_t, p_s)) * T**2
    ce = -math.log(_softmax(s)[1])  # label 1
    loss = task_kd_loss(torch.tensor([s]), torch.tensor([t]), torch.tensor([1]), alpha, T)
    assert loss.item() == pytest.approx(alpha * kl + (1 - alpha) * ce, rel=1e-6)


def test_alpha_bounds_select_one_term():
    s, t, y = torch.tensor([[1.0, -1.0]]), torch.tensor([[1.0, -1.0]]), torch.tensor([1])
    assert task_kd_loss(s, t, y, 1.0, 3.0).item() == pytest.approx(0.0, abs=1e-6)  # student = teacher
    assert task_kd_loss(s, t, y, 0.0, 3.0).item() == pytest.approx(-math.log(_softmax([1.0, -1.0])[1]), rel=1e-6)


def test_regression_uses_mse_to_teacher_and_label():
    s, t, y = torch.tensor([[3.0], [1.0]]), torch.tensor([[2.0], [2.0]]), torch.tensor([4.0, 1.0])
    # MSE(s, t) = (1 + 1) / 2 = 1; MSE(s, y) = (1 + 0) / 2 = 0.5
    assert task_kd_loss(s, t, y, 0.25, 2.0).item() == pytest.approx(0.25 * 1.0 + 0.75 * 0.5)
