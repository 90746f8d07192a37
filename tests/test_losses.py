import math

import torch

from distil.config.settings import LossWeights
from distil.science.losses import ce_loss, cosine_loss, distillation_loss, mlm_loss


def test_ce_loss_matches_hand_computed_kl_times_t_squared():
    s = torch.tensor([[1.0, 0.0, -1.0], [0.5, 0.5, 0.0]])
    t = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    T = 2.0
    expected = 0.0
    for si, ti in zip(s.tolist(), t.tolist()):
        ps = [math.exp(x / T) / sum(math.exp(y / T) for y in si) for x in si]
        pt = [math.exp(x / T) / sum(math.exp(y / T) for y in ti) for x in ti]
        expected += sum(b * math.log(b / a) for a, b in zip(ps, pt))
    expected = expected / 2 * T**2  # batchmean over 2 positions, times T²
    assert math.isclose(ce_loss(s, t, T).item(), expected, rel_tol=1e-5)


def test_ce_loss_is_zero_for_identical_logits_and_positive_otherwise():
    x = torch.randn(5, 11)
    assert ce_loss(x, x, 3.0).item() < 1e-6
    assert ce_loss(x, x.flip(0), 3.0).item() > 0.01


def test_mlm_loss_is_negative_log_likelihood_of_labels():
    logits = torch.tensor([[0.0, math.log(3.0)], [math.log(4.0), 0.0]])
    labels = torch.tensor([1, 1])
    expected = -(math.log(3 / 4) + math.log(1 / 5)) / 2
    assert math.isclose(mlm_loss(logits, labels).item(), expected, rel_tol=1e-6)


def test_cosine_loss_is_mean_one_minus_cosine():
    s = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    t = torch.tensor([[1.0, 1.0], [0.0, -1.0]])
    expected = ((1 - 1 / math.sqrt(2)) + (1 - -1)) / 2
    assert math.isclose(cosine_loss(s, t).item(), expected, rel_tol=1e-6)


def test_distillation_loss_weights_terms_and_skips_zero_alphas():
    torch.manual_seed(0)
    s, t = torch.randn(4, 7), torch.randn(4, 7)
    hs, ht = torch.randn(6, 3), torch.randn(6, 3)
    labels = torch.tensor([1, 2, 3, 4])
    out = distillation_loss(student_logits=s, teacher_logits=t, labels=labels, student_hidden=hs, teacher_hidden=ht,
                            weights=LossWeights(alpha_ce=5.0, alpha_mlm=2.0, alpha_cos=1.0, temperature=2.0))
    expected = 5 * ce_loss(s, t, 2.0) + 2 * mlm_loss(s, labels) + cosine_loss(hs, ht)
    assert torch.allclose(out["loss"], expected)
    only_cos = distillation_loss(student_logits=s, teacher_logits=t, labels=labels, student_hidden=hs,
                                 teacher_hidden=ht,
                                 weights=LossWeights(alpha_ce=0.0, alpha_mlm=0.0, alpha_cos=1.0, temperature=2.0))
    assert only_cos["ce"].item() == 0 and only_cos["mlm"].item() == 0
    assert torch.allclose(only_cos["loss"], cosine_loss(hs, ht))


def test_mlm_rows_select_masked_positions_among_all_projected():
    torch.manual_seed(0)
    s, t = torch.randn(5, 7), torch.randn(5, 7)
    rows = torch.tensor([False, True, False, True, False])
    labels = torch.tensor([2, 6])
    out = distillation_loss(student_logits=s, teacher_logits=t, labels=labels, student_hidden=s, teacher_hidden=t,
                            mlm_rows=rows,
                            weights=LossWeights(alpha_ce=1.0, alpha_mlm=1.0, alpha_cos=0.0, temperature=1.0))
    assert torch.allclose(out["mlm"], mlm_loss(s[rows], labels))
    assert torch.allclose(out["ce"], ce_loss(s, t, 1.0))  # KL over every projected position


def test_mse_loss_sums_over_vocabulary_and_averages_over_positions():
    from distil.science.losses import mse_loss

    s = torch.tensor([[1.0, 2.0], [0.0, 0.0]])
    t = torch.tensor([[0.0, 0.0], [3.0, 0.0]])
    assert mse_loss(s, t).item() == (1 + 4 + 9) / 2


def test_all_zero_alphas_are_rejected():
    import pytest

    with pytest.raises(ValueError, match="every alpha is 0"):
        LossWeights(alpha_ce=0.0, alpha_mlm=0.0, alpha_cos=0.0, temperature=2.0)
