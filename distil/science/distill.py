"""One distillation step, pure torch (no Ray): the science that `distil.search.train` runs on workers.

Supports: MLM logits restricted to masked positions (`restrict_ce_to_mask`, the default, the
vocabulary projection is then computed only at ~15 % of positions for teacher and student),
length-grouped batches, AdamW with linear warmup/decay, gradient clipping. Determinism: the
masks and dropout of step s on rank r depend only on (seed, s, r), and the batch of step s is a
pure function of s, so a run resumed from a checkpoint at step s repeats the uninterrupted run.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from transformers import BertForMaskedLM, DistilBertForMaskedLM, get_linear_schedule_with_warmup

from distil.config.settings import LossWeights
from distil.science.data import length_grouped_batches, pad_batch
from distil.science.losses import distillation_loss
from distil.science.masking import mask_tokens
from distil.science.teacher import mlm_logits_at


class StudentForDistillation(nn.Module):
    """Wraps a DistilBertForMaskedLM so one forward (the unit DDP synchronises) returns
    (last hidden (B, L, H), MLM logits (N, V) at the N True entries of `positions` (B, L))."""

    def __init__(self, student: DistilBertForMaskedLM):
        super().__init__()
        self.student = student

    def forward(self, input_ids, attention_mask, positions):
        s = self.student
        hidden = s.distilbert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        x = s.vocab_layer_norm(s.activation(s.vocab_transform(hidden[positions])))
        return hidden, s.vocab_projector(x)


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


def optimizer_for(model: nn.Module, d, total_steps: int):
    """(AdamW, linear warmup/decay schedule) of a distillation run of `total_steps` optimiser steps,
    as DistilBERT trains (Sanh et al. 2019, §3: Adam, lr 5e-4 with warmup); `d`: the run's
    distil.config.spec.DistillSpec (lr, weight_decay, warmup_ratio)."""
    opt = torch.optim.AdamW(model.parameters(), lr=d.lr, weight_decay=d.weight_decay)
    return opt, get_linear_schedule_with_warmup(opt, math.ceil(d.warmup_ratio * total_steps), total_steps)


def apply_update(model: nn.Module, opt, sched, max_grad_norm: float) -> None:
    """One optimiser step on the accumulated gradients: clip their global norm, step, advance the
    schedule, clear the gradients."""
    torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
    opt.step()
    sched.step()
    opt.zero_grad(set_to_none=True)


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
) -> dict[str, torch.Tensor]:
    """Mask a batch, run teacher (no grad) and student, return the loss terms (see distil.science.losses).

    input_ids / attention_mask: (B, L). `student` is a StudentForDistillation (possibly DDP-wrapped).
    """
    corrupted, labels = mask_tokens(input_ids, probs, mask_id=mask_id, mask_prob=mask_prob, generator=generator)
    masked = labels != -100
    positions = masked if restrict_ce_to_mask else attention_mask.bool()
    t_hidden = t_logits = None  # MLM alone (the mlm_only reference row) needs no teacher forward
    if weights.needs_teacher:
        with torch.no_grad():
            t_hidden, t_logits = mlm_logits_at(teacher, corrupted, attention_mask, positions)
    s_hidden, s_logits = student(corrupted, attention_mask, positions)
    mlm_rows = masked[positions]  # which projected rows are masked positions
    real = attention_mask.bool()
    return distillation_loss(
        student_logits=s_logits,
        teacher_logits=t_logits,
        labels=labels[masked],
        student_hidden=s_hidden[real],
        teacher_hidden=t_hidden[real] if t_hidden is not None else None,
        mlm_rows=mlm_rows,
        weights=weights,
    )
