"""Distillation losses of DistilBERT (Sanh et al. 2019, §2-3; HF
`examples/research_projects/distillation/distiller.py`), TinyBERT (Jiao et al. 2020, §3.1) and
MiniLMv2 (Wang et al. 2021, §3).

    L = alpha_ce · L_ce + alpha_mlm · L_mlm + alpha_cos · L_cos + alpha_mse · L_mse
        + alpha_hidden · L_hidden + alpha_attn · L_attn + alpha_relation · L_relation

A causal teacher (GPT-2 -> DistilGPT2, the same distiller with `alpha_clm`) is distilled without
masking: L = alpha_ce · L_ce + alpha_clm · L_clm + alpha_cos · L_cos (+ alpha_mse · L_mse), L_ce and L_cos
at every real position, L_clm the next-token cross-entropy (`causal_distillation_loss`).

Pure torch, no Ray: each term takes flat tensors of the positions it is computed on, or padded
(B, L, ...) tensors with the attention mask (B, L; 1 = real token) for the terms over pairs of
positions; padding never enters a term. The learned projections of the hidden-state terms live with
the student (distil.science.distill.StudentForDistillation); the terms here take their outputs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F

from distil.config.settings import LossWeights


def weighted_mean(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Σ w_i x_i / Σ w_i over rows, x (N,) and weight (N,) (0 = a padding row, which adds nothing even
    if it holds NaN or inf, and gets no gradient). Static shapes: no host sync on a GPU."""
    return torch.where(weight > 0, x, 0.0).mul(weight).sum() / weight.sum()


def _row_mean(x: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    """The mean of the per-row values x (N,): plain, or weighted_mean with `weight` (N,)."""
    return x.mean() if weight is None else weighted_mean(x, weight)


def ce_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float,
            weight: torch.Tensor | None = None) -> torch.Tensor:
    """Soft-target loss KL(softmax(t/T) ‖ softmax(s/T)) · T², averaged over positions.

    Hinton et al. 2015 §2 (the T² keeps gradient magnitudes comparable across temperatures);
    DistilBERT's L_ce. Shapes: logits (N, V) at N positions, weight (N,) of each row (default: all 1,
    see weighted_mean); returns a scalar (nats).
    """
    kl = F.kl_div(F.log_softmax(student_logits / temperature, dim=-1),
                  F.softmax(teacher_logits / temperature, dim=-1), reduction="none").sum(-1)  # (N,)
    return _row_mean(kl, weight) * temperature**2


def mlm_loss(student_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Masked-LM cross-entropy (Devlin et al. 2019 §3.1). logits (N, V), labels (N,) token ids, -100 for a
    row that is not predicted (ignored: the mean is over the others); scalar (nats)."""
    return F.cross_entropy(student_logits, labels)


def causal_labels(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Causal-LM labels: the input ids (B, L), -100 at the pads (attention_mask (B, L) 0), as the original
    distiller's `prepare_batch_clm`; the shift by one is clm_loss's."""
    return input_ids.masked_fill(attention_mask == 0, -100)


def clm_loss(student_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Causal-LM cross-entropy (Radford et al. 2019; the original distiller's L_clm): position l predicts
    token l + 1,

        L_clm = −(1/|P|) Σ_{(b, l) ∈ P} log softmax(z_{b,l})[y_{b,l+1}],  P = {(b, l): y_{b,l+1} ≠ −100}.

    logits (B, L, V), labels (B, L) token ids with −100 where a token is not predicted (padding,
    causal_labels); returns a scalar (nats): what transformers' `model(input_ids, labels=labels).loss`
    gives a causal LM (tests/test_families.py).
    """
    return F.cross_entropy(student_logits[:, :-1].flatten(0, 1), labels[:, 1:].flatten())


def cosine_loss(student_hidden: torch.Tensor, teacher_hidden: torch.Tensor,
                weight: torch.Tensor | None = None) -> torch.Tensor:
    """Cosine-embedding loss mean(1 − cos(h_s, h_t)) on last hidden states (DistilBERT's L_cos).

    Shapes: (N, H) at N non-pad positions (or at every position with `weight` (N,) 0 at the pads);
    returns a scalar in [0, 2].
    """
    target = student_hidden.new_ones(student_hidden.shape[0])
    return _row_mean(F.cosine_embedding_loss(student_hidden, teacher_hidden, target, reduction="none"), weight)


def mse_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
             weight: torch.Tensor | None = None) -> torch.Tensor:
    """Squared error between logits, summed over the vocabulary, averaged over positions.

    The HF distiller's `alpha_mse` term (`MSELoss(reduction="sum") / N`). Shapes: (N, V), weight (N,)
    as ce_loss's; scalar.
    """
    return _row_mean((student_logits - teacher_logits).pow(2).sum(-1), weight)


def hidden_mse(student: Sequence[torch.Tensor], teacher: Sequence[torch.Tensor],
               weight: torch.Tensor | None = None) -> torch.Tensor:
    """TinyBERT's hidden-state and embedding loss (Jiao et al. 2020, eq. 8-9, summed over layers as its
    L_model of §3.1 with every λ_m = 1): Σ_m MSE(H^S_m W, H^T_g(m)), where entry 0 is the embedding layer (E^S W_e
    against E^T, eq. 9) and entry m ≥ 1 student layer m's output against its mapped teacher layer's.

    student: the student's states already projected to the teacher's width (W_e, W_h applied by
    StudentForDistillation), each (M, H_t) at the M non-pad positions; teacher: the mapped teacher
    states, the same shapes. Each MSE is the mean over positions and units. With `weight` (M,) the
    states are at every position (M = B·L) and the pads weigh 0. Returns a scalar.

    Raises:
        ValueError: the two lists differ in length.
    """
    if len(student) != len(teacher):
        raise ValueError(f"{len(student)} student states against {len(teacher)} teacher states; map every student "
                         "layer to one teacher layer")
    # in fp32, as F.mse_loss runs under autocast
    return sum(_row_mean((s.float() - t.float()).pow(2).mean(-1), weight) for s, t in zip(student, teacher))


def attention_scores(query: torch.Tensor, key: torch.Tensor, heads: int) -> torch.Tensor:
    """Unnormalised attention scores Q_i K_iᵀ / √d of each head i (Vaswani et al. 2017, eq. 1 before
    the softmax; what TinyBERT's eq. 7 compares), from a layer's query and key projections of its input.

    query, key: (B, L, H) with H = heads · d. Returns (B, heads, L, L): entry [b, i, q, k] is how much
    position q attends to position k in head i, before the mask and softmax.
    """
    b, n, width = query.shape
    d = width // heads
    q = query.view(b, n, heads, d).transpose(1, 2)  # (B, h, L, d)
    k = key.view(b, n, heads, d).transpose(1, 2)
    return q @ k.transpose(-1, -2) / math.sqrt(d)


def _pair_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """(B, 1, L, L) bool: both the query and the key position are real tokens."""
    real = attention_mask.bool()
    return real[:, None, :, None] & real[:, None, None, :]


def attention_mse(student: Sequence[torch.Tensor], teacher: Sequence[torch.Tensor],
                  attention_mask: torch.Tensor) -> torch.Tensor:
    """TinyBERT's attention loss (Jiao et al. 2020, eq. 7, summed over layers as L_model, §3.1, λ_m = 1):
    Σ_m (1/h) Σ_i MSE(A^S_{m,i}, A^T_{g(m),i}), A the unnormalised scores of `attention_scores`.

    student, teacher: per mapped layer (B, h, L, L) with the same h; attention_mask (B, L). Each MSE is
    the mean over heads and over the (query, key) pairs of real tokens: a pair with a pad token counts
    nowhere (TinyBERT's code zeroes the masked scores instead). Returns a scalar.

    Raises:
        ValueError: the lists differ in length, or a layer's shapes differ (the head counts must agree).
    """
    if len(student) != len(teacher):
        raise ValueError(f"{len(student)} student layers against {len(teacher)} teacher layers")
    pairs = _pair_mask(attention_mask)
    total = 0
    for s, t in zip(student, teacher):
        if s.shape != t.shape:
            raise ValueError(f"attention scores {tuple(s.shape)} against {tuple(t.shape)}: alpha_attn needs the "
                             "teacher's head count (use alpha_relation across head counts)")
        # a masked sum, not s[pairs]: boolean indexing has a data-dependent shape (a host sync on a GPU);
        # in fp32, as mse_loss runs under autocast
        squared = torch.where(pairs, (s.float() - t.float()).pow(2), 0.0)
        total = total + squared.sum() / (pairs.sum() * s.shape[1])
    return total


def _relations(x: torch.Tensor, heads: int, keys: torch.Tensor) -> torch.Tensor:
    """log softmax(X_a X_aᵀ / √d_r) over the real keys, per relation head a: (B, L, H) -> (B, heads, L, L)."""
    b, n, width = x.shape
    if width % heads:
        raise ValueError(f"relation_heads {heads} does not divide the hidden size {width}")
    scores = attention_scores(x, x, heads).float()
    return scores.masked_fill(~keys, torch.finfo(scores.dtype).min).log_softmax(-1)


def relation_kl(student: Sequence[torch.Tensor], teacher: Sequence[torch.Tensor], attention_mask: torch.Tensor,
                relation_heads: int) -> torch.Tensor:
    """MiniLMv2's self-attention relation loss (Wang et al. 2021, §3: the relations of Q-Q, K-K and V-V,
    every weight α = 1): Σ_{X ∈ Q,K,V} 1/(A_r |x|) Σ_a Σ_t KL(R^T_{X,a,t} ‖ R^S_{X,a,t}), where
    R_{X,a} = softmax(X_a X_aᵀ / √d_r) and X_a is relation head a of the concatenated heads' X, split into
    A_r = `relation_heads` heads of d_r = H / A_r units (the teacher's and the student's d_r may differ).

    student: (Q, K, V) of the student's last layer, each (B, L, H_s); teacher: (Q, K, V) of one teacher
    layer, each (B, L, H_t); attention_mask (B, L). Pad keys get no probability, pad queries no weight;
    KL in nats, averaged over relation heads and real positions of the batch. Returns a scalar.

    Raises:
        ValueError: relation_heads does not divide H_s or H_t.
    """
    keys = attention_mask.bool()[:, None, None, :]  # (B, 1, 1, L)
    queries = attention_mask.bool()[:, None, :].expand(-1, relation_heads, -1)  # (B, A_r, L)
    total = 0
    for s, t in zip(student, teacher):
        log_s, log_t = _relations(s, relation_heads, keys), _relations(t, relation_heads, keys)
        kl = F.kl_div(log_s, log_t, log_target=True, reduction="none").masked_fill(~keys, 0.0).sum(-1)  # (B, A_r, L)
        total = total + torch.where(queries, kl, 0.0).sum() / queries.sum()  # the mean over real queries
    return total


@dataclass
class LayerStates:
    """What one model gives the layer-wise terms; a field is None when its term is off.

    hidden: per mapped layer (M, H_t) at the M non-pad positions, the embeddings first (`hidden_mse`);
    scores: per mapped layer (B, h, L, L) (`attention_mse`); qkv: the relation layer's (Q, K, V),
    each (B, L, H) (`relation_kl`).
    """

    hidden: list[torch.Tensor] | None = None
    scores: list[torch.Tensor] | None = None
    qkv: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None


def distillation_loss(
    *,
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor | None,
    labels: torch.Tensor,
    student_hidden: torch.Tensor,
    teacher_hidden: torch.Tensor | None,
    mlm_rows: torch.Tensor | None = None,
    weights: LossWeights,
    student_layers: LayerStates | None = None,
    teacher_layers: LayerStates | None = None,
    attention_mask: torch.Tensor | None = None,
    row_weight: torch.Tensor | None = None,
    hidden_weight: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """Weighted sum of the terms by `weights` (alphas, temperature, relation_heads); returns {'loss',
    'ce', 'mlm', 'cos', 'mse'} (scalars), plus 'hidden', 'attn', 'relation' for those whose alpha is > 0.

    logits (N, V) at the N masked positions with labels (N,); hidden (M, H) at the M non-pad positions
    (the student's projected to the teacher's width when the widths differ). The layer-wise terms read
    `student_layers` / `teacher_layers` (LayerStates) and the attention mask (B, L). A term whose alpha
    is 0 is not computed (ce, mlm, cos, mse reported as 0; the others not reported); the teacher's
    tensors may be None when every term that uses them (all but mlm) has alpha 0. The layer-wise terms
    are added after the DistilBERT ones, so a run without them sums exactly what it always did.

    Static shapes (what a GPU step uses: distil.science.batch.MaskedBatch): `row_weight` (N,) weighs the
    logits' rows (0 = padding), `labels` (N,) is then aligned with them, -100 where a row is not a masked
    position (`mlm_rows` unused); `hidden_weight` (M,) weighs the hidden states' and the layer states'
    rows (every position, 0 at the pads). The same values up to float summation order.

    Raises:
        ValueError: alpha_clm is positive (the causal LM term is causal_distillation_loss's: a masked LM has none).
    """
    w = weights
    if w.alpha_clm > 0:
        raise ValueError("alpha_clm is a causal teacher's term; a masked LM is distilled with alpha_mlm: set "
                         "alpha_clm to 0")
    zero = student_hidden.new_zeros(())
    rw, hw = row_weight, hidden_weight
    ce = ce_loss(student_logits, teacher_logits, w.temperature, rw) if w.alpha_ce > 0 else zero
    mlm_logits = student_logits if mlm_rows is None else student_logits[mlm_rows]
    mlm = mlm_loss(mlm_logits, labels) if w.alpha_mlm > 0 else zero
    cos = cosine_loss(student_hidden, teacher_hidden, hw) if w.alpha_cos > 0 else zero
    mse = mse_loss(student_logits, teacher_logits, rw) if w.alpha_mse > 0 else zero
    loss = w.alpha_ce * ce + w.alpha_mlm * mlm + w.alpha_cos * cos + w.alpha_mse * mse  # the order of the sum is kept
    out = {"loss": loss, "ce": ce, "mlm": mlm, "cos": cos, "mse": mse}
    s, t = student_layers, teacher_layers
    if w.alpha_hidden > 0:
        out["hidden"] = hidden_mse(s.hidden, t.hidden, hw)
        out["loss"] = out["loss"] + w.alpha_hidden * out["hidden"]
    if w.alpha_attn > 0:
        out["attn"] = attention_mse(s.scores, t.scores, attention_mask)
        out["loss"] = out["loss"] + w.alpha_attn * out["attn"]
    if w.alpha_relation > 0:
        out["relation"] = relation_kl(s.qkv, t.qkv, attention_mask, w.relation_heads)
        out["loss"] = out["loss"] + w.alpha_relation * out["relation"]
    return out


def causal_distillation_loss(
    *,
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor | None,
    labels: torch.Tensor,
    student_hidden: torch.Tensor,
    teacher_hidden: torch.Tensor | None,
    attention_mask: torch.Tensor,
    weights: LossWeights,
) -> dict[str, torch.Tensor]:
    """Weighted sum of a causal teacher's terms by `weights`; returns {'loss', 'ce', 'clm', 'cos', 'mse'}
    (scalars; a term whose alpha is 0 is not computed and reported as 0).

    No masking (the original distiller for GPT-2): L_ce = KL(softmax(t/T) ‖ softmax(s/T)) · T² on the
    next-token distributions and L_cos = 1 − cos(h_s, h_t) on the last hidden states (GPT-2's after ln_f),
    both averaged over every real position; L_clm = clm_loss on `labels` (causal_labels).

    logits (B, L, V), hidden (B, L, H), labels and attention_mask (B, L); the teacher's tensors may be None
    when alpha_ce, alpha_cos and alpha_mse are 0. Static shapes: the pads weigh 0 (weighted_mean), no
    boolean gathers. `weights`' alpha_mlm and layer-wise alphas must be 0 (a causal student has no
    masked positions and no DistilBERT layers to read).

    Raises:
        ValueError: alpha_mlm or a layer-wise alpha is positive.
    """
    w = weights
    if w.alpha_mlm > 0 or any(a > 0 for a in w.layer_alphas):
        raise ValueError("a causal teacher is distilled with alpha_ce, alpha_clm, alpha_cos and alpha_mse; set "
                         "alpha_mlm, alpha_hidden, alpha_attn and alpha_relation to 0")
    zero = student_hidden.new_zeros(())
    real = attention_mask.flatten().float()  # (B·L,) 1 = a real position
    s_rows = student_logits.flatten(0, 1)  # (B·L, V)
    t_rows = teacher_logits.flatten(0, 1) if teacher_logits is not None else None
    ce = ce_loss(s_rows, t_rows, w.temperature, real) if w.alpha_ce > 0 else zero
    clm = clm_loss(student_logits, labels) if w.alpha_clm > 0 else zero
    cos = (cosine_loss(student_hidden.flatten(0, 1), teacher_hidden.flatten(0, 1), real)
           if w.alpha_cos > 0 else zero)
    mse = mse_loss(s_rows, t_rows, real) if w.alpha_mse > 0 else zero
    loss = w.alpha_ce * ce + w.alpha_clm * clm + w.alpha_cos * cos + w.alpha_mse * mse
    return {"loss": loss, "ce": ce, "clm": clm, "cos": cos, "mse": mse}
