"""MLM masking with token-frequency smoothing (DistilBERT / HF distiller `prepare_batch_mlm`).

15 % of the real tokens of a batch are chosen for prediction, sampled with probability
proportional to count(token)^-smoothing (Sanh et al. 2019 §3 follow XLM, Lample & Conneau 2019
§3.1: rare tokens are oversampled); of those, 80 % become [MASK], 10 % keep their token, 10 %
become a random token. Special and pad tokens are never chosen.
"""

from __future__ import annotations

import math

import torch


def token_probs(counts: torch.Tensor, smoothing: float, special_ids: list[int]) -> torch.Tensor:
    """Per-vocabulary-entry sampling weight count^-smoothing (counts clamped to >= 1); 0 for special ids.

    counts: (V,) corpus token counts. smoothing=0 gives uniform masking. Returns (V,) float.
    """
    probs = counts.clamp(min=1).double().pow(-smoothing).float()
    probs[special_ids] = 0.0
    return probs


def mask_tokens(
    input_ids: torch.Tensor,
    probs: torch.Tensor,
    *,
    mask_id: int,
    mask_prob: float = 0.15,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pick ceil(mask_prob · #eligible) positions without replacement and corrupt them 80/10/10.

    input_ids: (B, L) ids, pad and special tokens included (their weight in `probs` is 0).
    Returns (corrupted ids (B, L), labels (B, L): original id at chosen positions, -100 elsewhere).
    The draws run on `generator`'s device (a CPU generator for GPU inputs: the same masks as on a
    CPU, then moved to the inputs' device).
    """
    if generator is not None and generator.device != input_ids.device:
        corrupted, labels = mask_tokens(input_ids.to(generator.device), probs.to(generator.device), mask_id=mask_id,
                                        mask_prob=mask_prob, generator=generator)
        return corrupted.to(input_ids.device), labels.to(input_ids.device)
    weights = probs[input_ids].flatten()
    eligible = int((weights > 0).sum())
    n_pick = min(eligible, math.ceil(mask_prob * eligible))
    labels = torch.full_like(input_ids, -100)
    if n_pick == 0:
        return input_ids.clone(), labels
    picked = torch.multinomial(weights, n_pick, replacement=False, generator=generator)
    flat_ids = input_ids.flatten().clone()
    labels.view(-1)[picked] = flat_ids[picked]
    action = torch.multinomial(torch.tensor([0.8, 0.1, 0.1]), n_pick, replacement=True, generator=generator)
    random_ids = torch.randint(len(probs), (n_pick,), generator=generator)
    real = flat_ids[picked]
    flat_ids[picked] = torch.where(action == 0, mask_id, torch.where(action == 1, real, random_ids))
    return flat_ids.view_as(input_ids), labels
