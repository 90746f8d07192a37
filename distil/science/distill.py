"""One distillation step, pure torch (no Ray): the science that `distil.search.train` runs on workers.

Supports: MLM logits restricted to masked positions (`restrict_ce_to_mask`, the default, the
vocabulary projection is then computed only at ~15 % of positions for teacher and student),
length-grouped batches, AdamW with linear warmup/decay, gradient clipping, students narrower than
the teacher, and the layer-wise terms (TinyBERT's hidden states, embeddings and attention scores
through a layer map, MiniLMv2's attention relations) with their learned projections. Determinism: the
masks and dropout of step s on rank r depend only on (seed, s, r), and the batch of step s is a
pure function of s, so a run resumed from a checkpoint at step s repeats the uninterrupted run.
The step's device code has static shapes and no host sync (gathers by index and weighted sums over a
distil.science.batch.MaskedBatch prepared on the CPU).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from transformers import BertConfig, BertForMaskedLM, DistilBertForMaskedLM, get_linear_schedule_with_warmup

from distil.config.families import CLM, family_of
from distil.config.layers import parse_layer_key, select_layers
from distil.config.rules import check_layer_terms, teacher_shape
from distil.config.settings import LossWeights, StudentShape
from distil.science.data import length_grouped_batches, pad_batch
from distil.science.batch import CausalBatch, MaskedBatch, encoder_mask, gather_rows, prepare_batch
from distil.science.student import selection_projection
from distil.science.losses import (LayerStates, attention_scores, causal_distillation_loss, causal_labels,
                                   distillation_loss)
from distil.science.teacher import mlm_logits_at


class StudentForDistillation(nn.Module):
    """Wraps a DistilBertForMaskedLM so one forward (the unit DDP synchronises) returns
    (last hidden (B, L, H), MLM logits (N, V) at `positions`, extras): `positions` is (N,) flat indices
    b·L + l (distil.science.batch.MaskedBatch.rows) or a (B, L) bool mask with N True entries.
    `attention_mask`: (B, L), or the (B, 1, L, L) of distil.science.batch.encoder_mask.

    `extras` (a dict) holds what the terms of `weights` need from the student beyond that:
    'hidden': [W_e·embeddings, W_h·layer 1, ..., W_h·layer M], each (B, L, H_t) (alpha_hidden);
    'last': W_h·last hidden (B, L, H_t) (alpha_cos when the widths differ); 'scores': per layer the
    unnormalised attention scores (B, h, L, L) (alpha_attn); 'qkv': the last layer's Q, K, V, each
    (B, L, H) (alpha_relation). Without `weights` (or with those terms at 0) it is empty and the
    forward is the plain DistilBERT one.

    The projections W_h, W_e (TinyBERT eq. 8-9: linear maps from the student's width H to the
    teacher's H_t, `teacher` its config) exist only when a term needs them. They start as the inverse
    of weight selection (`selection_projection`): student unit j goes to the teacher unit it was
    selected from (distil.science.student.evenly_spaced(H_t, H)[j]) with weight 1, every other weight and
    the bias 0; at the teacher's width, the identity. TinyBERT learns them from a random start; here
    that start moved a weight-selected student's copied weights before the map was learned (hidden
    states only, 54 steps: −5.77 [−8.82, −2.30] macro points against the undistilled init; +1.19
    [−1.39, 3.98] from this start, docs/measurements/2026-12-04-narrow-288.md). From the selection's
    inverse the term's first gradients reach the student only through the units it shares with the
    teacher. They are in `projections`, trained with the student by the same optimiser, and not part of
    the student's saved weights: a checkpoint carries them apart (`projections.state_dict()`), and they
    are dropped after distillation.

    Raises:
        SpecError (a ValueError): the terms do not fit the shapes (distil.config.rules.check_layer_terms).
    """

    def __init__(self, student: DistilBertForMaskedLM, weights: LossWeights | None = None,
                 teacher: BertConfig | None = None):
        super().__init__()
        self.student = student
        c = student.config
        w = weights or LossWeights(alpha_ce=0.0, alpha_mlm=1.0, alpha_cos=0.0, temperature=1.0)
        t = teacher_shape(teacher.to_dict()) if teacher is not None else StudentShape(c.dim, c.n_heads, c.hidden_dim)
        check_layer_terms(StudentShape(c.dim, c.n_heads, c.hidden_dim), t, w.alpha_attn > 0,
                          w.relation_heads if w.alpha_relation > 0 else None)
        self.hidden, self.attn, self.relation = (a > 0 for a in w.layer_alphas)
        self.project_last = w.alpha_cos > 0 and t.hidden_size != c.dim
        self.projections = nn.ModuleDict()  # empty (no parameters at all) unless a term needs one
        if self.hidden or self.project_last:
            self.projections["hidden"] = nn.Linear(c.dim, t.hidden_size)
        if self.hidden:
            self.projections["embeddings"] = nn.Linear(c.dim, t.hidden_size)
        for linear in self.projections.values():
            with torch.no_grad():
                linear.weight.copy_(selection_projection(c.dim, t.hidden_size))
                linear.bias.zero_()

    def forward(self, input_ids, attention_mask, positions):
        s = self.student
        layers = self.hidden or self.attn or self.relation
        if layers:  # the inputs of every layer too: states[m] goes into layer m, states[-1] is the output
            out = s.distilbert(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True)
            states = out.hidden_states
        else:
            out = s.distilbert(input_ids=input_ids, attention_mask=attention_mask)
        hidden = out.last_hidden_state
        x = s.vocab_layer_norm(s.activation(s.vocab_transform(gather_rows(hidden, positions))))
        extras = {}
        if self.project_last:
            extras["last"] = self.projections["hidden"](hidden)
        if self.hidden:
            extras["hidden"] = [self.projections["embeddings"](states[0]),
                                *(self.projections["hidden"](h) for h in states[1:])]
        blocks = s.distilbert.transformer.layer
        if self.attn:
            extras["scores"] = [attention_scores(b.attention.q_lin(h), b.attention.k_lin(h), b.attention.n_heads)
                                for b, h in zip(blocks, states)]
        if self.relation:
            a, h = blocks[-1].attention, states[-2]
            extras["qkv"] = (a.q_lin(h), a.k_lin(h), a.v_lin(h))
        return hidden, s.vocab_projector(x), extras


class MaskedLMStudent(nn.Module):
    """Wraps a masked-LM student of its teacher's own class (RobertaForMaskedLM: distil.config.families)
    as StudentForDistillation wraps a DistilBERT: one forward returns (last hidden (B, L, H), MLM logits
    (N, V) at `positions` (flat indices or a (B, L) bool mask), {}), the vocabulary projection computed
    at those rows only. The DistilBERT terms (ce, mlm, cos, mse) apply; the layer-wise ones do not.

    Raises:
        ValueError: `weights` turn on a layer-wise term (alpha_hidden, alpha_attn, alpha_relation).
    """

    def __init__(self, student: nn.Module, weights: LossWeights | None = None):
        super().__init__()
        if weights is not None and any(a > 0 for a in weights.layer_alphas):
            raise ValueError(f"alpha_hidden, alpha_attn and alpha_relation are DistilBERT students' only; a "
                             f"{student.config.model_type} student takes alpha_ce, alpha_mlm, alpha_cos, alpha_mse")
        self.student = student
        self.projections = nn.ModuleDict()  # none: what the Distiller's checkpoints carry for every student

    def forward(self, input_ids, attention_mask, positions):
        hidden = self.student.base_model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return hidden, self.student.lm_head(gather_rows(hidden, positions)), {}


class CausalLMStudent(nn.Module):
    """Wraps a causal student (GPT2LMHeadModel: distil.config.families) as the Distiller holds every
    student: `.student` is the model saved in checkpoints, `.projections` is empty (no layer-wise terms).
    The forward is the student's own (DDP synchronises it): `causal_loss_terms` calls it with input_ids,
    attention_mask and output_hidden_states.

    Raises:
        ValueError: `weights` turn on alpha_mlm or a layer-wise term (a causal student takes alpha_ce,
            alpha_clm, alpha_cos and alpha_mse).
    """

    def __init__(self, student: nn.Module, weights: LossWeights | None = None):
        super().__init__()
        if weights is not None and (weights.alpha_mlm > 0 or any(a > 0 for a in weights.layer_alphas)):
            raise ValueError(f"a {student.config.model_type} student is distilled with alpha_ce, alpha_clm, alpha_cos "
                             "and alpha_mse; set alpha_mlm, alpha_hidden, alpha_attn and alpha_relation to 0")
        self.student = student
        self.projections = nn.ModuleDict()

    def forward(self, input_ids, attention_mask, output_hidden_states: bool = False):
        return self.student(input_ids=input_ids, attention_mask=attention_mask,
                            output_hidden_states=output_hidden_states)


def wrap_student(student: nn.Module, weights: LossWeights, teacher_config) -> nn.Module:
    """The wrapper a student of the teacher's family (`teacher_config`: its transformers config) is
    distilled in: a DistilBERT (BERT teacher) in StudentForDistillation, with the layer-wise terms'
    projections; a RoBERTa student in MaskedLMStudent; a GPT-2 student in CausalLMStudent.

    Raises:
        SpecError (a ValueError): a model_type outside the family table.
        ValueError: a term of `weights` that the family's student does not take.
    """
    family = family_of(teacher_config.model_type)
    if family.objective == CLM:
        return CausalLMStudent(student, weights)
    if family.copies_by_name:
        return MaskedLMStudent(student, weights)
    return StudentForDistillation(student, weights, teacher_config)


@torch.no_grad()
def teacher_layers(teacher: BertForMaskedLM, input_ids, attention_mask, positions, weights: LossWeights,
                   n_student: int):
    """The teacher's side of every term: (last hidden (B, L, H_t), MLM logits (N, V) at `positions`
    (flat indices or a bool mask, as StudentForDistillation's),
    extras) as StudentForDistillation gives the student's, unprojected, from the teacher layers
    `weights.layer_map` maps the student's `n_student` layers to (distil.config.layers.select_layers;
    'hidden' starts with the embedding output) and, for 'qkv', teacher layer `weights.relation_layer`.

    Raises:
        ValueError: a layer map that does not fit the two depths, or a relation layer the teacher lacks.
    """
    bert, n_teacher = teacher.bert, teacher.config.num_hidden_layers
    out = bert(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True)
    states, hidden = out.hidden_states, out.last_hidden_state
    mapped = select_layers(parse_layer_key(weights.layer_map), n_teacher, n_student)
    extras = {}
    if weights.alpha_hidden > 0:
        extras["hidden"] = [states[0], *(states[j + 1] for j in mapped)]
    heads = teacher.config.num_attention_heads
    if weights.alpha_attn > 0:
        attn = [bert.encoder.layer[j].attention.self for j in mapped]
        extras["scores"] = [attention_scores(a.query(states[j]), a.key(states[j]), heads) for a, j in zip(attn, mapped)]
    if weights.alpha_relation > 0:
        j = weights.relation_layer
        if not -n_teacher <= j < n_teacher:
            raise ValueError(f"relation_layer {j} is not a layer of the {n_teacher}-layer teacher")
        j %= n_teacher
        a = bert.encoder.layer[j].attention.self
        extras["qkv"] = (a.query(states[j]), a.key(states[j]), a.value(states[j]))
    return hidden, teacher.cls(gather_rows(hidden, positions)), extras


def step_seed(seed: int, step: int, rank: int, world: int) -> int:
    return (seed * 1_000_003 + step * world + rank) % (2**63)


class BatchStream:
    """The batch of global step s for rank r: length-grouped batches, reshuffled each epoch.

    `sequences`: indexable by int, giving (L,) int64 id tensors — a `distil.science.data.TokenSequences`
    (memory-mapped; its `lengths` array is used) or a list of tensors. `stream(s, pad_id)` is
    (input_ids (B, L_max), attention_mask (B, L_max)) and a pure function of (seed, s, rank,
    world): a restarted worker gets the batches of the uninterrupted run (exact resume).

    Raises:
        ValueError: fewer batches of batch_size than workers.
    """

    def __init__(self, sequences, batch_size: int, seed: int, rank: int, world: int):
        self.sequences, self.batch_size, self.seed, self.rank, self.world = sequences, batch_size, seed, rank, world
        lengths = getattr(sequences, "lengths", None)
        self.lengths = np.asarray(lengths if lengths is not None else [len(s) for s in sequences])
        n = len(self.lengths) // batch_size
        if n < world:
            raise ValueError(f"corpus too small: fewer batches of {batch_size} than {world} workers")
        self.usable = n - n % world  # every rank sees the same number of batches per epoch
        self._epoch, self._batches = -1, None

    def __call__(self, step: int, pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
        epoch, pos = divmod(step * self.world + self.rank, self.usable)
        if epoch != self._epoch:
            self._epoch, self._batches = epoch, length_grouped_batches(self.lengths, self.batch_size, self.seed + epoch)
        return pad_batch([self.sequences[i] for i in self._batches[pos]], pad_id)


def optimizer_for(model: nn.Module, d, total_steps: int, fused: bool = False):
    """(AdamW, linear warmup/decay schedule) of a distillation run of `total_steps` optimiser steps,
    as DistilBERT trains (Sanh et al. 2019, §3: Adam, lr 5e-4 with warmup); `d`: the run's
    distil.config.spec.DistillSpec (lr, weight_decay, warmup_ratio). fused: one kernel for the whole
    update (pass it on CUDA only: on a CPU the default implementation is the one resumed runs repeat)."""
    opt = torch.optim.AdamW(model.parameters(), lr=d.lr, weight_decay=d.weight_decay, fused=fused or None)
    return opt, get_linear_schedule_with_warmup(opt, math.ceil(d.warmup_ratio * total_steps), total_steps)


def apply_update(model: nn.Module, opt, sched, max_grad_norm: float) -> bool:
    """One optimiser step on the accumulated gradients: clip their global norm, step, advance the
    schedule, clear the gradients. Returns False, without stepping (gradients cleared, schedule not
    advanced), when that norm is not finite. Reading the norm is one host sync. Under DDP the
    gradients are all-reduced before, so every rank gets the same answer without a collective of its own."""
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
    if not torch.isfinite(norm):
        opt.zero_grad(set_to_none=True)
        return False
    opt.step()
    sched.step()
    opt.zero_grad(set_to_none=True)
    return True


def distill_step(
    teacher: BertForMaskedLM,
    student: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    probs: torch.Tensor,
    weights: LossWeights,
    *,
    mask_id: int,
    mask_prob: float,
    restrict_ce_to_mask: bool,
    generator: torch.Generator,
    pad_id: int = 0,
    length: int | None = None,
) -> dict[str, torch.Tensor]:
    """Mask and pad a CPU batch (distil.science.batch.prepare_batch, masks drawn on `generator`), move
    it to the teacher's device, then `loss_terms`: the loss terms of teacher (no grad) and student.

    input_ids / attention_mask: (B, L) on the CPU; probs: (V,) masking weights; length: pad to this many
    positions (default L).

    Raises:
        ValueError: `student` was built without what a positive alpha of `weights` needs.
    """
    batch = prepare_batch(input_ids.cpu(), attention_mask.cpu(), probs.cpu(), mask_id=mask_id, pad_id=pad_id,
                          mask_prob=mask_prob, restrict_ce_to_mask=restrict_ce_to_mask, generator=generator,
                          length=length)
    return loss_terms(teacher, student, batch.to(next(teacher.parameters()).device), weights)


def loss_terms(teacher: BertForMaskedLM, student: nn.Module, batch: MaskedBatch, weights: LossWeights
               ) -> dict[str, torch.Tensor]:
    """Run teacher (no grad) and student on a masked batch (on their device), return the loss terms
    (0-dim tensors, 'loss' their weighted sum; see distil.science.losses).

    Static shapes only, no host sync on a GPU: the logits are gathered at `batch.rows` by index, the
    terms over positions are weighted sums (pads weigh 0), and the encoders get a 4D mask
    (distil.science.batch.encoder_mask). The same values as the boolean-mask gathers of the
    positions, up to float summation order (tests/test_distill.py). `student` is a
    StudentForDistillation (possibly DDP-wrapped) built for `weights` (its projections and extras). With
    every layer-wise alpha at 0 the teacher runs as mlm_logits_at and the step is the DistilBERT one.

    Raises:
        ValueError: `student` was built without what a positive alpha of `weights` needs.
    """
    corrupted, attn, rows = batch.corrupted, batch.attention_mask, batch.rows
    wrapper = getattr(student, "module", student)  # DDP wraps it as .module
    t_hidden = t_logits = None  # MLM alone (the mlm_only reference row) needs no teacher forward
    t_extras = {}
    if weights.needs_teacher:
        t_mask = encoder_mask(attn, teacher.config)
        if any(a > 0 for a in weights.layer_alphas):
            t_hidden, t_logits, t_extras = teacher_layers(teacher, corrupted, t_mask, rows, weights,
                                                          wrapper.student.config.n_layers)
        else:
            with torch.no_grad():
                t_hidden, t_logits = mlm_logits_at(teacher, corrupted, t_mask, rows)
    s_hidden, s_logits, s_extras = student(corrupted, encoder_mask(attn, wrapper.student.config), rows)
    needed = [k for k, a in (("hidden", weights.alpha_hidden), ("scores", weights.alpha_attn),
                             ("qkv", weights.alpha_relation)) if a > 0 and k not in s_extras]
    if weights.alpha_cos > 0 and t_hidden is not None and t_hidden.shape[-1] != s_hidden.shape[-1]:
        needed += [] if "last" in s_extras else ["last"]
    if needed:
        raise ValueError(f"the student wrapper gives no {needed} for these loss weights; build it as "
                         "StudentForDistillation(student, weights, teacher.config)")
    s_cos = s_extras.get("last", s_hidden)  # projected to the teacher's width when the widths differ
    return distillation_loss(
        student_logits=s_logits,
        teacher_logits=t_logits,
        labels=batch.row_labels,
        student_hidden=s_cos.flatten(0, 1),
        teacher_hidden=t_hidden.flatten(0, 1) if t_hidden is not None else None,
        weights=weights,
        student_layers=_flat(s_extras),
        teacher_layers=_flat(t_extras),
        attention_mask=attn,
        row_weight=batch.row_weight,
        hidden_weight=attn.flatten().float(),
    )


def _flat(extras: dict) -> LayerStates:
    """The layer states of one model's extras, hidden states (B, L, H) flattened to (B·L, H) (every
    position: the pads weigh 0 in the loss)."""
    hidden = extras.get("hidden")
    return LayerStates(hidden=[h.flatten(0, 1) for h in hidden] if hidden is not None else None,
                       scores=extras.get("scores"), qkv=extras.get("qkv"))


def causal_loss_terms(teacher: nn.Module, student: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                      weights: LossWeights) -> dict[str, torch.Tensor]:
    """Run a causal teacher (no grad) and student (GPT2LMHeadModel, possibly DDP-wrapped) on one batch
    and return the causal loss terms (distil.science.losses.causal_distillation_loss: 'loss', 'ce', 'clm',
    'cos', 'mse'). No masking: the original distiller's step for GPT-2.

    input_ids, attention_mask: (B, L) on the models' device, right-padded (a pad then changes nothing
    at the real positions before it: the attention is causal); the labels are the ids with −100 at the
    pads (causal_labels). The (B, L, V) logits are computed at every position: every term reads them all.
    """
    labels = causal_labels(input_ids, attention_mask)
    hidden = weights.alpha_cos > 0  # hidden_states[-1]: GPT-2's last layer after ln_f
    t_logits = t_hidden = None  # CLM alone (a clm_only row) needs no teacher forward
    if weights.needs_teacher:
        with torch.no_grad():
            t = teacher(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=hidden)
        t_logits, t_hidden = t.logits, t.hidden_states[-1] if hidden else None
    s = student(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=hidden)
    s_hidden = s.hidden_states[-1] if hidden else s.logits.new_zeros(())
    return causal_distillation_loss(student_logits=s.logits, teacher_logits=t_logits, labels=labels,
                                    student_hidden=s_hidden, teacher_hidden=t_hidden, attention_mask=attention_mask,
                                    weights=weights)


def causal_batch_terms(teacher: nn.Module, student: nn.Module, batch: CausalBatch, weights: LossWeights
                       ) -> dict[str, torch.Tensor]:
    """causal_loss_terms on a CausalBatch (on the models' device): the Distiller's step for a causal teacher."""
    return causal_loss_terms(teacher, student, batch.input_ids, batch.attention_mask, weights)
