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


# ---------------------------------------------------------------- layer-wise terms (TinyBERT, MiniLMv2)
def test_hidden_mse_sums_each_layers_mean_squared_error():
    from distil.science.losses import hidden_mse

    # Entry 0 is the embedding layer (TinyBERT eq. 9), entry 1 a transformer layer (eq. 8): (M=2, H_t=2) each.
    s = [torch.tensor([[1.0, 2.0], [3.0, 4.0]]), torch.tensor([[0.0, 0.0], [1.0, 1.0]])]
    t = [torch.tensor([[0.0, 0.0], [1.0, 4.0]]), torch.tensor([[0.0, 2.0], [1.0, 1.0]])]
    # layer 0: (1 + 4 + 4 + 0) / 4 = 2.25; layer 1: (0 + 4 + 0 + 0) / 4 = 1
    assert hidden_mse(s, t).item() == 3.25


def test_attention_scores_are_per_head_dot_products_over_sqrt_d():
    from distil.science.losses import attention_scores

    q = torch.tensor([[[1.0, 0.0, 0.0, 1.0], [0.0, 1.0, 1.0, 0.0]]])  # (B=1, L=2, H=4): 2 heads of d=2
    k = torch.tensor([[[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 2.0, 0.0]]])
    expected = torch.tensor([[[[1.0, 0.0], [1.0, 0.0]],  # head 0: q (1,0), (0,1) against k (1,1), (0,0)
                              [[0.0, 0.0], [0.0, 2.0]]]]) / math.sqrt(2)  # head 1: q (0,1), (1,0) against (0,0), (2,0)
    assert torch.allclose(attention_scores(q, k, heads=2), expected)


def test_attention_mse_averages_over_heads_and_real_pairs_only():
    import pytest

    from distil.science.losses import attention_mse

    mask = torch.tensor([[1, 1, 0]])  # the third token is padding
    s = torch.zeros(1, 2, 3, 3)
    t = torch.full((1, 2, 3, 3), 100.0)  # whatever sits in a pair with the pad token must not count
    t[0, 0, :2, :2] = torch.tensor([[1.0, 2.0], [3.0, 0.0]])
    t[0, 1, :2, :2] = torch.tensor([[0.0, 0.0], [0.0, 2.0]])
    # (1 + 4 + 9 + 0 + 0 + 0 + 0 + 4) / (2 heads · 4 real pairs) = 2.25 per layer; two layers summed
    assert attention_mse([s, s], [t, t], mask).item() == 4.5
    with pytest.raises(ValueError, match="teacher's head count"):
        attention_mse([torch.zeros(1, 4, 3, 3)], [t], mask)


def _kl_two_keys(a: float) -> float:
    """KL(softmax([a, 0]) ‖ [1/2, 1/2]) in nats."""
    p = math.exp(a) / (math.exp(a) + 1)
    return p * math.log(2 * p) + (1 - p) * math.log(2 * (1 - p))


def test_relation_kl_is_minilmv2_qq_kk_vv_kl_over_real_tokens():
    from distil.science.losses import relation_kl

    mask = torch.tensor([[1, 1, 0]])
    # One relation head, width 1: the relation of positions i, j is x_i·x_j. A zero student has uniform
    # relations [1/2, 1/2] over the two real keys; the teacher's Q = (1, 0) gives row 0 softmax([1, 0])
    # and row 1 softmax([0, 0]) (KL 0); K = 0 gives KL 0; V = (2, 0) gives row 0 softmax([4, 0]).
    # The pad position holds large values in both models: it must change nothing.
    def col(*v):
        return torch.tensor(v).view(1, 3, 1)

    teacher = (col(1.0, 0.0, 5.0), col(0.0, 0.0, -7.0), col(2.0, 0.0, 3.0))
    student = (col(0.0, 0.0, 9.0), col(0.0, 0.0, 4.0), col(0.0, 0.0, -2.0))
    expected = (_kl_two_keys(1.0) + 0.0) / 2 + 0.0 + (_kl_two_keys(4.0) + 0.0) / 2  # mean over 2 real queries
    assert math.isclose(relation_kl(student, teacher, mask, relation_heads=1).item(), expected, rel_tol=1e-5)


def test_relation_kl_works_across_widths_with_each_models_own_scale():
    import pytest

    from distil.science.losses import relation_kl

    torch.manual_seed(0)
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]])
    # Teacher: width 4 in 2 relation heads of d_r = 2 whose second unit is 0; student: width 2 in 2 heads of
    # d_r = 1 holding the first units divided by 2^(1/4), so x_i·x_j/√d_r is the same number in both.
    t = [torch.randn(2, 4, 4) for _ in range(3)]
    for x in t:
        x[..., 1::2] = 0.0
    s = [x[..., 0::2] / 2**0.25 for x in t]
    assert relation_kl(s, t, mask, relation_heads=2).item() < 1e-6
    assert relation_kl([x[..., 0::2] for x in t], t, mask, relation_heads=2).item() > 1e-3  # unscaled: differs
    with pytest.raises(ValueError, match="relation_heads 3 does not divide"):
        relation_kl(s, t, mask, relation_heads=3)


def test_distillation_loss_adds_layer_terms_with_their_weights_and_reports_them_when_on():
    from distil.science.losses import LayerStates, attention_mse, hidden_mse, relation_kl

    torch.manual_seed(0)
    s, t = torch.randn(4, 7), torch.randn(4, 7)
    hs, ht = torch.randn(6, 3), torch.randn(6, 3)
    labels = torch.tensor([1, 2, 3, 4])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    states = [LayerStates(hidden=[torch.randn(5, 3), torch.randn(5, 3)], scores=[torch.randn(2, 2, 3, 3)],
                          qkv=tuple(torch.randn(2, 3, 4) for _ in range(3))) for _ in range(2)]
    w = LossWeights(alpha_ce=5.0, alpha_mlm=2.0, alpha_cos=1.0, temperature=2.0, alpha_hidden=0.5, alpha_attn=3.0,
                    alpha_relation=0.25, relation_heads=2)
    out = distillation_loss(student_logits=s, teacher_logits=t, labels=labels, student_hidden=hs, teacher_hidden=ht,
                            weights=w, student_layers=states[0], teacher_layers=states[1], attention_mask=mask)
    hidden = hidden_mse(states[0].hidden, states[1].hidden)
    attn = attention_mse(states[0].scores, states[1].scores, mask)
    relation = relation_kl(states[0].qkv, states[1].qkv, mask, 2)
    base = 5 * ce_loss(s, t, 2.0) + 2 * mlm_loss(s, labels) + cosine_loss(hs, ht)
    assert torch.allclose(out["loss"], base + 0.5 * hidden + 3.0 * attn + 0.25 * relation)
    assert all(torch.equal(out[k], v) for k, v in (("hidden", hidden), ("attn", attn), ("relation", relation)))
    off = distillation_loss(student_logits=s, teacher_logits=t, labels=labels, student_hidden=hs, teacher_hidden=ht,
                            weights=LossWeights(alpha_ce=5.0, alpha_mlm=2.0, alpha_cos=1.0, temperature=2.0))
    assert set(off) == {"loss", "ce", "mlm", "cos", "mse"}  # the metrics of a run without them are unchanged


def test_a_layer_term_alone_is_something_to_learn():
    w = LossWeights(alpha_ce=0.0, alpha_mlm=0.0, alpha_cos=0.0, temperature=2.0, alpha_relation=1.0)
    assert w.needs_teacher
