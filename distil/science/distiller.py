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

Host syncs: none per micro-step on the hot path (loss terms and token counts accumulate as device
tensors and are read by `interval()`); one per optimiser step (the gradient-norm check).
"""

from __future__ import annotations

import contextlib
import copy
import math

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from distil.config.settings import LossWeights
from distil.science.distill import apply_update, loss_terms, optimizer_for, step_seed
from distil.science.masking import mask_tokens


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

    teacher: a frozen BertForMaskedLM on `device`, in eval mode (with bf16 the Distiller runs a copy
    with bf16 linear layers, cast_frozen_linears, and leaves `teacher` as it is). model: a
    StudentForDistillation built for `weights`, on `device`, possibly DDP-wrapped. batches:
    `batches(s, pad_id)` -> (input_ids (B, L), attention_mask (B, L)) on the CPU, a pure function of
    the micro-step s (a distil.science.distill.BatchStream). probs: (V,) masking weights
    (distil.science.masking.token_probs). d: the run's DistillSpec (lr, weight_decay, warmup_ratio,
    grad_accumulation, max_grad_norm, mlm_mask_prob, restrict_ce_to_mask; its `bf16` is not read:
    `bf16` is the resolved choice, distil.science.precision.resolve_bf16). rank/world: this worker's
    place (seeds and token counts). terms_fn: `loss_terms` or a function with its signature (a
    benchmark's other math).

    Masks are drawn on the CPU with a CPU generator (the same masks on every device) before the batch
    moves to `device`; dropout draws from the global RNG seeded per micro-step.
    """

    def __init__(self, teacher: nn.Module, model: nn.Module, batches, probs: torch.Tensor, weights: LossWeights, d,
                 *, total_steps: int, seed: int, pad_id: int, mask_id: int, device: torch.device | str = "cpu",
                 bf16: bool = False, rank: int = 0, world: int = 1, terms_fn=loss_terms):
        self.device = torch.device(device)
        self.teacher = cast_frozen_linears(teacher, torch.bfloat16) if bf16 else teacher
        self.model, self.batches, self.weights, self.d = model, batches, weights, d
        self.probs = probs.cpu()  # masks are drawn on the CPU: no copy back from the GPU per micro-step
        self.seed, self.pad_id, self.mask_id, self.rank, self.world = seed, pad_id, mask_id, rank, world
        self.bf16, self.terms_fn = bf16, terms_fn
        self.opt, self.sched = optimizer_for(model, d, total_steps, fused=self.device.type == "cuda")
        self.steps_done = 0  # optimiser steps
        self.tokens = 0  # real tokens of every rank in the steps up to the last interval() (int)
        self._sums, self._tokens, self._interval_start = {}, self._zero(), 0

    def _zero(self) -> torch.Tensor:
        return torch.zeros((), dtype=torch.long, device=self.device)

    @property
    def wrapper(self) -> nn.Module:
        """The StudentForDistillation (DDP's `.module` when wrapped)."""
        return getattr(self.model, "module", self.model)

    @property
    def student(self) -> nn.Module:
        """The DistilBertForMaskedLM being distilled (what a checkpoint saves; no projections)."""
        return self.wrapper.student

    def step(self) -> None:
        """One optimiser step: `d.grad_accumulation` micro-batches, then the update.

        Raises:
            NonFiniteLoss: the clipped gradient norm is NaN/inf ("loss is nan at step 37" when this
                rank's loss is, else "gradient norm is not finite at step 37 (loss 2.31 finite on this
                rank)"; steps count from 1). A NaN loss whose gradients stay finite is not caught here:
                it shows in the loss terms interval() reads. On NonFiniteLoss, weights, optimizer,
                schedule and counters are those before this step: a checkpoint written next holds the
                last good state.
        """
        accum, step = self.d.grad_accumulation, self.steps_done
        self.model.train()
        sums, tokens = {}, None
        for micro in range(step * accum, (step + 1) * accum):
            seed = step_seed(self.seed, micro, self.rank, self.world)
            torch.manual_seed(seed)  # dropout
            ids, attn = self.batches(micro, self.pad_id)
            corrupted, labels = mask_tokens(ids, self.probs, mask_id=self.mask_id, mask_prob=self.d.mlm_mask_prob,
                                            generator=torch.Generator().manual_seed(seed))
            corrupted, labels, attn = (t.to(self.device, non_blocking=True) for t in (corrupted, labels, attn))
            last = micro == (step + 1) * accum - 1
            # DDP all-reduces the gradients in backward: once per optimiser step, on its last micro-batch.
            sync = contextlib.nullcontext() if last or not isinstance(self.model, DistributedDataParallel) \
                else self.model.no_sync()
            with sync:
                with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
                    terms = self.terms_fn(self.teacher, self.model, corrupted, labels, attn, self.weights,
                                          restrict_ce_to_mask=self.d.restrict_ce_to_mask)
                (terms["loss"] / accum).backward()  # outside autocast: backward runs in the forward ops' dtypes
            # float64 as the float() sums this replaces: the same means, read once per interval.
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + v.detach().to(torch.float64) / accum
            n = attn.sum()
            tokens = n if tokens is None else tokens + n
        if not apply_update(self.model, self.opt, self.sched, self.d.max_grad_norm):
            loss = float(sums["loss"])
            why = (f"loss is {loss} at step {step + 1}" if not math.isfinite(loss)
                   else f"gradient norm is not finite at step {step + 1} (loss {loss:.4g} finite on this rank)")
            raise NonFiniteLoss(why)
        for k, v in sums.items():  # counted once the step is taken: a failed step leaves no trace
            self._sums[k] = self._sums.get(k, 0.0) + v
        self._tokens += tokens
        self.steps_done += 1

    def interval(self) -> dict:
        """Read and reset what was accumulated since the last call (one host sync): {'terms': the mean
        of each loss term per optimiser step, 'tokens': real tokens of every rank in those steps
        (this rank's count × world: ranks draw equally long batches on average), 'steps': how many}.
        Adds 'tokens' to `self.tokens`."""
        steps = self.steps_done - self._interval_start
        tokens = int(self._tokens) * self.world
        terms = {k: float(v) / steps for k, v in self._sums.items()} if steps else {}
        self.tokens += tokens
        self._sums, self._tokens, self._interval_start = {}, self._zero(), self.steps_done
        return {"terms": terms, "tokens": tokens, "steps": steps}

    def state_dict(self) -> dict:
        """What `train_state.pt` holds: optimizer, scheduler, step, tokens (cumulative, every rank;
        steps since the last interval() included) and the projections of the layer-wise terms. The
        student's weights are not in it (saved apart, as a Hugging Face dir)."""
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
        if "projections" in state:
            self.wrapper.projections.load_state_dict(state["projections"])
