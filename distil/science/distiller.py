"""The distillation loop as one object, pure torch (no Ray): the Ray Train worker wraps it
(distil.search.train) and every benchmark calls it (benchmarks/distill_throughput.py, gpu_budget.py,
corpus_scaling.py), so the numbers they print are the worker's.

Supports: gradient accumulation (micro-batches of one optimiser step; under DDP the gradients are
all-reduced once per step, `no_sync` on the others), bf16 autocast (a resolved bool, see
distil.science.precision; the frozen teacher's linear layers cast to bf16 once), AdamW with linear
warmup/decay (fused on CUDA), gradient clipping, a non-finite check on the clipped gradient norm,
token accounting, and exact resume: `state_dict()` is what a checkpoint's `train_state.pt` holds
(optimizer, scheduler, step, tokens, the learned projections), and the masks, dropout and batch of
step s on rank r depend only on (seed, s, r), so a Distiller restored at step s repeats the
uninterrupted run. Not supported: resuming with a different world size (the batch of a step
depends on it).

Host syncs: none per micro-step (loss terms and token counts accumulate as device tensors and are
read by `interval()`; the batches are masked, padded to fixed shapes and indexed on the CPU,
distil.science.batch, and on CUDA prepared ahead by a thread into pinned memory). The non-finite check
has two modes: `deferred=False` (the CPU default) reads the clipped gradient norm each optimiser step
(one sync) and raises before the update; `deferred=True` (the CUDA default; fused AdamW) keeps on the
device the first step whose norm is not finite and skips that update and every later one inside the
fused kernel (its `found_inf`), and `interval()` (a log or checkpoint step) reads it, rolls the step
count and schedule back to that step and raises the same NonFiniteLoss: the run stops at the next
interval instead of at once, with the state before the bad step either way.
"""

from __future__ import annotations

import contextlib
import copy
import math

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from distil.config.families import CLM
from distil.config.settings import LossWeights
from distil.science.batch import (CausalBatch, MaskedBatch, Prefetcher, bucket_length, prepare_batch,
                                  prepare_causal_batch)
from distil.science.distill import apply_update, causal_batch_terms, loss_terms, optimizer_for, step_seed
from distil.science.families import family_of_model


class NonFiniteLoss(RuntimeError):
    """The distillation loss (or its gradient) became NaN or inf: the run cannot recover (retrying repeats it)."""


def cast_frozen_linears(model: nn.Module, dtype: torch.dtype) -> nn.Module:
    """A copy of the frozen `model` whose linear layers' weights and biases are cast to `dtype` once;
    every other tensor (embeddings, layer norms, buffers) is shared with `model`, not copied, and
    `model` itself is left as it was (students are built from its fp32 weights).

    For a frozen model run under autocast: autocast casts a weight that needs no grad on every
    forward (its cast cache keeps only leaves that require grad); cast beforehand, the result is
    the same bits without the copies. Layer norms and embeddings stay fp32, as autocast runs them;
    a linear layer tied to an embedding (BERT's MLM decoder and the word embeddings) gets its own
    cast weight and the embedding stays fp32. The cast weights are new memory (half their fp32 size);
    drop the fp32 model to free its linear weights.
    """
    shared = {id(t): t for t in (*model.parameters(), *model.buffers())}  # deepcopy's memo: not copied
    copied = copy.deepcopy(model, shared)
    for m in copied.modules():
        if isinstance(m, nn.Linear):
            m.weight = nn.Parameter(m.weight.detach().to(dtype), requires_grad=False)
            if m.bias is not None:
                m.bias = nn.Parameter(m.bias.detach().to(dtype), requires_grad=False)
    return copied


class Distiller:
    """One student's distillation: `step()` runs one optimiser step, `interval()` reads the metrics.

    teacher: a frozen teacher of a family of distil.config.families (BertForMaskedLM, RobertaForMaskedLM,
    GPT2LMHeadModel) on `device`, in eval mode (with bf16 the Distiller runs a copy with bf16 linear layers,
    cast_frozen_linears, and leaves `teacher` as it is). model: the student in the wrapper of its family
    (distil.science.distill.wrap_student: StudentForDistillation, MaskedLMStudent, CausalLMStudent) built
    for `weights`, on `device`, possibly DDP-wrapped. batches:
    `batches(s, pad_id)` -> (input_ids (B, L), attention_mask (B, L)) on the CPU, a pure function of
    the micro-step s (a distil.science.distill.BatchStream). probs: (V,) masking weights
    (distil.science.masking.token_probs). d: the run's DistillSpec (lr, weight_decay, warmup_ratio,
    grad_accumulation, max_grad_norm, mlm_mask_prob, restrict_ce_to_mask, compile; its `bf16` is not read:
    `bf16` is the resolved choice, distil.science.precision.resolve_bf16). rank/world: this worker's
    place (seeds and token counts). terms_fn: `loss_terms` or a function with its signature (a
    benchmark's other math: `fn(teacher, model, batch: MaskedBatch, weights)`; default: `loss_terms`, or
    `causal_batch_terms` for a causal teacher).

    A causal teacher (objective `clm`: GPT-2) is distilled without masking, as the original distiller does
    for GPT-2: each micro-batch is only padded (distil.science.batch.CausalBatch; `probs` and `mask_id` are
    not read, pass None) and its terms are causal_loss_terms' (ce, clm, cos, mse at every real position);
    the accumulation, token counts, non-finite check, state dict and resume are the same.

    Masks are drawn on the CPU with a CPU generator (the same masks on every device) before the batch
    moves to `device`; dropout draws from the global RNG seeded per micro-step. Each batch's length is
    padded to a multiple of `length_multiple` (default 32 on CUDA, 1 on a CPU; capped at the longest
    sequence of `batches` when it has `lengths`, and at the models' positions), so the shapes repeat;
    the count of rows whose logits are computed is fixed per length on every device.

    deferred: the non-finite check mode (module docstring; default: on CUDA). prefetch: prepare the
    batches on a background thread (default: on CUDA, into pinned memory); the same batches either way.
    """

    def __init__(self, teacher: nn.Module, model: nn.Module, batches, probs: torch.Tensor | None,
                 weights: LossWeights, d, *, total_steps: int, seed: int, pad_id: int, mask_id: int | None,
                 device: torch.device | str = "cpu", bf16: bool = False, rank: int = 0, world: int = 1, terms_fn=None,
                 length_multiple: int | None = None, deferred: bool | None = None, prefetch: bool | None = None):
        self.device = torch.device(device)
        cuda = self.device.type == "cuda"
        family = family_of_model(teacher)
        self.causal = family.objective == CLM  # no masking: CausalBatch, causal_batch_terms
        self.teacher = cast_frozen_linears(teacher, torch.bfloat16) if bf16 else teacher
        self.model, self.batches, self.weights, self.d = model, batches, weights, d
        # masks are drawn on the CPU: no copy back from the GPU per micro-step
        self.probs = probs.cpu() if not self.causal else None
        self.seed, self.pad_id, self.mask_id, self.rank, self.world = seed, pad_id, mask_id, rank, world
        # Padding L changes the shape of dropout's draws, so a padded step is not the unpadded one up to
        # summation order, and on 2 CPU cores the padding is extra work: buckets where fixed shapes pay
        # (CUDA: torch.compile, CUDA graphs, no reallocation), the batch's own length on a CPU.
        self.length_multiple = length_multiple or (32 if cuda else 1)
        self.bf16 = bf16
        self.terms_fn = terms_fn or (causal_batch_terms if self.causal else loss_terms)
        positions = [family.max_seq_len(c.to_dict()) for c in (teacher.config, self.student.config)]
        lengths = getattr(batches, "lengths", None)
        self.max_len = min(positions + ([int(max(lengths))] if lengths is not None and len(lengths) else []))
        self.deferred = cuda if deferred is None else deferred
        # fused AdamW: one kernel for the update, and the only AdamW that skips an update on the device
        # (found_inf); on a CPU without deferred the default implementation, the one older runs repeat.
        self.opt, self.sched = optimizer_for(model, d, total_steps, fused=cuda or self.deferred)
        self.pin = cuda
        if getattr(d, "compile", False):  # in place: the module, its names and state dict stay as they were
            self.wrapper.compile()
        self._prefetch = Prefetcher(self._prepare) if (cuda if prefetch is None else prefetch) else None
        self.steps_done = 0  # optimiser steps
        self.tokens = 0  # real tokens of every rank in the steps up to the last interval() (int)
        self._sums, self._tokens, self._interval_start = {}, self._zero(), 0
        self._bad_step, self._bad_loss = self._zero(), torch.zeros((), dtype=torch.float64, device=self.device)

    def _zero(self) -> torch.Tensor:
        return torch.zeros((), dtype=torch.long, device=self.device)

    @property
    def wrapper(self) -> nn.Module:
        """The student's wrapper, StudentForDistillation, MaskedLMStudent or CausalLMStudent (DDP's `.module`
        when wrapped)."""
        return getattr(self.model, "module", self.model)

    @property
    def student(self) -> nn.Module:
        """The student being distilled, e.g. a DistilBertForMaskedLM (what a checkpoint saves; no projections)."""
        return self.wrapper.student

    def _prepare(self, micro: int) -> MaskedBatch | CausalBatch:
        """Micro-batch `micro` masked, padded and indexed on the CPU (pinned for a GPU): a pure function
        of (seed, micro, rank, world), whichever thread runs it. A causal teacher's: padded only."""
        seed = step_seed(self.seed, micro, self.rank, self.world)
        ids, attn = self.batches(micro, self.pad_id)
        if self.causal:
            batch = prepare_causal_batch(ids, attn, pad_id=self.pad_id,
                                         length=bucket_length(ids.shape[1], self.length_multiple, self.max_len))
            return batch.pin_memory() if self.pin else batch
        batch = prepare_batch(ids, attn, self.probs, mask_id=self.mask_id, pad_id=self.pad_id,
                              mask_prob=self.d.mlm_mask_prob, restrict_ce_to_mask=self.d.restrict_ce_to_mask,
                              generator=torch.Generator().manual_seed(seed),
                              length=bucket_length(ids.shape[1], self.length_multiple, self.max_len))
        return batch.pin_memory() if self.pin else batch

    def batch(self, micro: int) -> MaskedBatch | CausalBatch:
        """Micro-batch `micro` on the CPU as step() uses it (prefetched or not: the same tensors)."""
        return self._prefetch.get(micro) if self._prefetch is not None else self._prepare(micro)

    def close(self) -> None:
        """Stop the prefetch thread (a later step() starts it again)."""
        if self._prefetch is not None:
            self._prefetch.close()

    def step(self) -> None:
        """One optimiser step: `d.grad_accumulation` micro-batches, then the update.

        Raises:
            NonFiniteLoss: (not deferred) the clipped gradient norm is NaN/inf ("loss is nan at step
                37" when this rank's loss is, else "gradient norm is not finite at step 37 (loss 2.31
                finite on this rank)"; steps count from 1). A NaN loss whose gradients stay finite is
                not caught here: it shows in the loss terms interval() reads. On NonFiniteLoss, weights,
                optimizer, schedule and counters are those before this step: a checkpoint written next
                holds the last good state. Deferred, interval() raises it.
        """
        accum, step = self.d.grad_accumulation, self.steps_done
        self.model.train()
        sums, tokens = {}, 0
        for micro in range(step * accum, (step + 1) * accum):
            torch.manual_seed(step_seed(self.seed, micro, self.rank, self.world))  # dropout
            batch = self.batch(micro)
            tokens += batch.tokens
            batch = batch.to(self.device)
            last = micro == (step + 1) * accum - 1
            # DDP all-reduces the gradients in backward: once per optimiser step, on its last micro-batch.
            sync = contextlib.nullcontext() if last or not isinstance(self.model, DistributedDataParallel) \
                else self.model.no_sync()
            with sync:
                with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
                    terms = self.terms_fn(self.teacher, self.model, batch, self.weights)
                (terms["loss"] / accum).backward()  # outside autocast: backward runs in the forward ops' dtypes
            # float64 as the float() sums this replaces: the same means, read once per interval.
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + v.detach().to(torch.float64) / accum
        if self.deferred:
            self._deferred_update(sums, tokens)
            return
        if not apply_update(self.model, self.opt, self.sched, self.d.max_grad_norm):
            raise NonFiniteLoss(self._why(step + 1, float(sums["loss"])))
        for k, v in sums.items():  # counted once the step is taken: a failed step leaves no trace
            self._sums[k] = self._sums.get(k, 0.0) + v
        self._tokens += tokens
        self.steps_done += 1

    @staticmethod
    def _why(step: int, loss: float) -> str:
        return (f"loss is {loss} at step {step}" if not math.isfinite(loss)
                else f"gradient norm is not finite at step {step} (loss {loss:.4g} finite on this rank)")

    def _deferred_update(self, sums: dict, tokens: int) -> None:
        """The update without a host sync: the first step whose clipped gradient norm is not finite is
        kept on the device (`_bad_step`, 1-based; 0: none) with its loss, and fused AdamW skips that
        update and every later one (found_inf = 1: weights, moments and step counts untouched)."""
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.d.max_grad_norm)
        first = ~torch.isfinite(norm) & (self._bad_step == 0)
        self._bad_step = torch.where(first, self.steps_done + 1, self._bad_step)
        self._bad_loss = torch.where(first, sums["loss"], self._bad_loss)
        skip = self._bad_step > 0
        self.opt.found_inf = skip.float()  # read by the fused kernel (as torch.amp.GradScaler sets it)
        self.opt.step()
        self.sched.step()  # on the host: rolled back by _check() if a step was skipped
        self.opt.zero_grad(set_to_none=True)
        for k, v in sums.items():  # a skipped step leaves no trace in the metrics
            self._sums[k] = self._sums.get(k, 0.0) + torch.where(skip, 0.0, v)
        self._tokens += (~skip).long() * tokens
        self.steps_done += 1

    def _check(self) -> None:
        """Deferred mode: read the first non-finite step (one host sync); if there is one, return to the
        state before it (step count, schedule; the weights and optimizer were never updated) and raise."""
        if not self.deferred:
            return
        bad = int(self._bad_step)
        if not bad:
            return
        why = self._why(bad, float(self._bad_loss))
        self.steps_done = bad - 1
        self.sched.last_epoch = bad - 2  # step() adds one and sets the learning rates of step bad - 1
        self.sched.step()
        self._bad_step.zero_()
        raise NonFiniteLoss(why)

    def interval(self) -> dict:
        """Read and reset what was accumulated since the last call (one host sync): {'terms': the mean
        of each loss term per optimiser step, 'tokens': real tokens of every rank in those steps
        (this rank's count × world: ranks draw equally long batches on average), 'steps': how many}.
        Adds 'tokens' to `self.tokens`.

        Raises:
            NonFiniteLoss: deferred mode, a step since the last check had a non-finite gradient norm (the
                message and the state after it as step() gives them undeferred; the steps before it stay
                accumulated: call interval() again to read them).
        """
        self._check()
        steps = self.steps_done - self._interval_start
        tokens = int(self._tokens) * self.world
        terms = {k: float(v) / steps for k, v in self._sums.items()} if steps else {}
        self.tokens += tokens
        self._sums, self._tokens, self._interval_start = {}, self._zero(), self.steps_done
        return {"terms": terms, "tokens": tokens, "steps": steps}

    def state_dict(self) -> dict:
        """What `train_state.pt` holds: optimizer, scheduler, step, tokens (cumulative, every rank;
        steps since the last interval() included) and the projections of the layer-wise terms. The
        student's weights are not in it (saved apart, as a Hugging Face dir).

        Raises:
            NonFiniteLoss: deferred mode, a non-finite step not yet reported (as interval()).
        """
        self._check()
        return {"optimizer": self.opt.state_dict(), "scheduler": self.sched.state_dict(), "step": self.steps_done,
                "tokens": self.tokens + int(self._tokens) * self.world,
                "projections": self.wrapper.projections.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        """Continue from `state` (a state_dict(), or an older train_state.pt: 'tokens' and
        'projections' may be absent). The student's weights are loaded by whoever built the model."""
        self.opt.load_state_dict(state["optimizer"])
        self.sched.load_state_dict(state["scheduler"])
        self.steps_done = self._interval_start = state["step"]
        self.tokens = state.get("tokens", 0)
        self._sums, self._tokens = {}, self._zero()
        self._bad_step.zero_()
        if "projections" in state:
            self.wrapper.projections.load_state_dict(state["projections"])
