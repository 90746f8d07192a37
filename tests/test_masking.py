import math

import torch

from distil.science.masking import mask_tokens, token_probs

V, MASK, PAD, CLS, SEP = 50, 3, 0, 1, 2


def _batch(generator, b=64, length=40):
    ids = torch.randint(4, V, (b, length), generator=generator)
    ids[:, 0], ids[:, -1] = CLS, SEP
    ids[: b // 2, length - 10 :] = PAD  # half the rows padded
    return ids


def test_specials_and_pad_never_picked_and_exactly_15_percent_chosen():
    g = torch.Generator().manual_seed(0)
    ids = _batch(g)
    probs = token_probs(torch.ones(V), 0.7, [PAD, CLS, SEP, MASK])
    corrupted, labels = mask_tokens(ids, probs, mask_id=MASK, generator=g)
    chosen = labels != -100
    eligible = int((probs[ids] > 0).sum())
    assert int(chosen.sum()) == math.ceil(0.15 * eligible)
    assert not chosen[ids == PAD].any() and not chosen[ids == CLS].any() and not chosen[ids == SEP].any()
    assert torch.equal(corrupted[~chosen], ids[~chosen])
    assert torch.equal(labels[chosen], ids[chosen])


def test_80_10_10_split_of_chosen_positions():
    g = torch.Generator().manual_seed(1)
    probs = token_probs(torch.ones(V), 0.0, [PAD, CLS, SEP, MASK])
    masked = kept = total = 0
    for _ in range(30):
        ids = _batch(g)
        corrupted, labels = mask_tokens(ids, probs, mask_id=MASK, generator=g)
        chosen = labels != -100
        masked += int((corrupted[chosen] == MASK).sum())
        kept += int((corrupted[chosen] == ids[chosen]).sum())
        total += int(chosen.sum())
    # "kept" also catches random replacements that drew the same id (1/V of the 10 %).
    assert abs(masked / total - 0.8) < 0.02
    assert abs(kept / total - (0.1 + 0.1 / V)) < 0.02


def test_smoothing_oversamples_rare_tokens_as_count_power_minus_0_7():
    counts = torch.ones(V)
    counts[10], counts[11] = 1000.0, 1.0  # token 10 is frequent, 11 rare
    probs = token_probs(counts, 0.7, [PAD, CLS, SEP, MASK])
    assert math.isclose(probs[11].item() / probs[10].item(), 1000**0.7, rel_tol=1e-4)
    g = torch.Generator().manual_seed(2)
    ids = torch.tensor([[CLS] + [10, 11] * 200 + [SEP]])
    hits = torch.zeros(2)
    for _ in range(200):
        _, labels = mask_tokens(ids, probs, mask_id=MASK, generator=g)
        hits += torch.tensor([(labels == 10).sum(), (labels == 11).sum()])
    assert hits[1] > 20 * hits[0]  # rare token picked far more often (sampling without replacement caps it)
    assert probs[[PAD, CLS, SEP, MASK]].sum() == 0
