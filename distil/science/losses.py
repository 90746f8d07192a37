"""Distillation losses of DistilBERT (Sanh et al. 2019, §2-3; HF
`examples/research_projects/distillation/distiller.py`).

    L = alpha_ce · L_ce + alpha_mlm · L_mlm + alpha_cos · L_cos + alpha_mse · L_mse

Pure torch, no Ray: each term takes flat tensors of the positions it is computed on.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from distil.config.settings import LossWeights


def ce_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Soft-target loss KL(softmax(t/T) ‖ softmax(s/T)) · T², averaged over positions.

    Hinton et al. 2015 §2 (the T² keeps gradient magnitudes comparable across temperatures);
    DistilBERT's L_ce. Shapes: logits (N, V) at N positions; returns a scalar (nats).
    """
    return (
        F.kl_div(
            F.log_softmax(student_logits / temperature, dim=-1),
            F.softmax(teacher_logits / temperature, dim=-1),
            reduction="batchmean",
        )
        * temperature**2
    )


def mlm_loss(student_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Masked-LM cross-entropy (Devlin et al. 2019 §3.1). logits (N, V), labels (N,) token ids; scalar (nats)."""
    return F.cross_entropy(student_logits, labels)


def cosine_loss(student_hidden: torch.Tensor, teacher_hidden: torch.Tensor) -> torch.Tensor:
    """Cosine-embedding loss mean(1 − cos(h_s, h_t)) on last hidden states (DistilBERT's L_cos).

    Shapes: (N, H) at N non-pad positions; returns a scalar in [0, 2].
    """
    target = student_hidden.new_ones(student_hidden.shape[0])
    return F.cosine_embedding_loss(student_hidden, teacher_hidden, target)


def mse_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """Squared error between logits, summed over the vocabulary, averaged over positions.

    The HF distiller's `alpha_mse` term (`MSELoss(reduction="sum") / N`). Shapes: (N, V); scalar.
    """
    return F.mse_loss(student_logits, teacher_logits, reduction="sum") / student_logits.shape[0]


def distillation_loss(
    *,
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor | None,
    labels: torch.Tensor,
    student_hidden: torch.Tensor,
    teacher_hidden: torch.Tensor | None,
    mlm_rows: torch.Tensor | None = None,
    weights: LossWeights,
) -> dict[str, torch.Tensor]:
    """Weighted sum of the terms by `weights` (alphas, temperature); returns {'loss', 'ce', 'mlm',
    'cos', 'mse'} (scalars).

    logits (N, V) at the N masked positions with labels (N,); hidden (M, H) at the M non-pad positions.
    A term whose alpha is 0 is not computed (reported as 0); the teacher's tensors may be None
    when every term that uses them (ce, cos, mse) has alpha 0.
    """
    w = weights
    zero = student_hidden.new_zeros(())
    ce = ce_loss(student_logits, teacher_logits, w.temperature) if w.alpha_ce > 0 else zero
    mlm_logits = student_logits if mlm_rows is None else student_logits[mlm_rows]
    mlm = mlm_loss(mlm_logits, labels) if w.alpha_mlm > 0 else zero
    cos = cosine_loss(student_hidden, teacher_hidden) if w.alpha_cos > 0 else zero
    mse = mse_loss(student_logits, teacher_logits) if w.alpha_mse > 0 else zero
    loss = w.alpha_ce * ce + w.alpha_mlm * mlm + w.alpha_cos * cos + w.alpha_mse * mse  # the order of the sum is kept
    return {"loss": loss, "ce": ce, "mlm": mlm, "cos": cos, "mse": mse}
