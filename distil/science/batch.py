"""A distillation batch as the device sees it: masked on the CPU, padded to fixed shapes, with index
tensors instead of boolean masks, optionally prepared ahead on a background thread.

Why: on a GPU every boolean-mask gather (`hidden[masked]`) and every data-dependent shape makes the
host wait for the device (the result's size must be read back). Here the CPU, which draws the masks
anyway, also lists the positions each term reads as flat indices padded to a fixed count with a 0/1
weight, and pads the sequence length to a bucket (a multiple of `length_multiple`), so the device
code is `index_select` and weighted sums over shapes that repeat (what torch.compile and CUDA graphs
need to not recompile). The masks are drawn on the unpadded batch: they do not depend on the bucket,
and are the same on every device for a given seed.
"""

from __future__ import annotations

import math
import queue
import threading
import weakref
from dataclasses import dataclass, fields

import torch

from distil.science.masking import mask_tokens


@dataclass
class MaskedBatch:
    """One micro-batch, B sequences padded to L positions; N = rows.numel() (a fixed count per L).

    corrupted: (B, L) input ids after masking; attention_mask: (B, L) 1 = real token; labels: (B, L)
    original id at the chosen positions, -100 elsewhere (padding included); rows: (N,) flat indices
    b·L + l of the positions whose MLM logits are computed (the masked ones with restrict_ce_to_mask,
    else every real one), then padding entries 0; row_weight: (N,) float 1 for a listed position, 0
    for padding; row_labels: (N,) labels at `rows`, -100 at padding (cross-entropy ignores it);
    tokens: real tokens (a host int: counting them needs no device).
    """

    corrupted: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor
    rows: torch.Tensor
    row_weight: torch.Tensor
    row_labels: torch.Tensor
    tokens: int

    def _map(self, fn) -> MaskedBatch:
        return MaskedBatch(**{f.name: fn(getattr(self, f.name)) if f.name != "tokens" else self.tokens
                              for f in fields(self)})

    def to(self, device: torch.device | str) -> MaskedBatch:
        """On `device`, copied asynchronously (no host wait when the batch is in pinned memory)."""
        return self._map(lambda t: t.to(device, non_blocking=True))

    def pin_memory(self) -> MaskedBatch:
        """In page-locked memory: the copy to a GPU can then overlap compute."""
        return self._map(lambda t: t.pin_memory())


@dataclass
class CausalBatch:
    """One micro-batch of a causal teacher's step (no masking): B sequences right-padded to L positions.

    input_ids: (B, L), pads `pad_id`; attention_mask: (B, L) 1 = real token; tokens: real tokens (a host
    int). The labels are the ids themselves (distil.science.losses.causal_labels), built on the device.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    tokens: int

    def to(self, device: torch.device | str) -> CausalBatch:
        """On `device`, copied asynchronously (no host wait when the batch is in pinned memory)."""
        return CausalBatch(self.input_ids.to(device, non_blocking=True),
                           self.attention_mask.to(device, non_blocking=True), self.tokens)

    def pin_memory(self) -> CausalBatch:
        """In page-locked memory: the copy to a GPU can then overlap compute."""
        return CausalBatch(self.input_ids.pin_memory(), self.attention_mask.pin_memory(), self.tokens)


def prepare_causal_batch(input_ids: torch.Tensor, attention_mask: torch.Tensor, *, pad_id: int,
                         length: int | None = None) -> CausalBatch:
    """A (B, L0) CPU batch right-padded to `length` (≥ L0; default L0) positions with `pad_id`."""
    ids, attn = _pad_right(input_ids, length, pad_id), _pad_right(attention_mask, length, 0)
    return CausalBatch(ids, attn, int(attn.sum()))


def _pad_right(t: torch.Tensor, length: int | None, value: int) -> torch.Tensor:
    """(B, L0) `t` right-padded with `value` to `length` (≥ L0; None: as it is) positions.

    Raises:
        ValueError: `length` < L0."""
    l0 = t.shape[1]
    length = length or l0
    if length < l0:
        raise ValueError(f"cannot pad a batch of length {l0} to {length}")
    return torch.nn.functional.pad(t, (0, length - l0), value=value)


def round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def bucket_length(length: int, multiple: int, cap: int | None) -> int:
    """`length` rounded up to a multiple of `multiple`, but not past `cap` (the longest sequence or the
    model's positions); never below `length`."""
    padded = round_up(length, multiple)
    return max(length, min(padded, cap)) if cap is not None else padded


def _padded_index(flags: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(indices of the True entries of the flat bool `flags`, then 0s, (size,) long; weight (size,) float)."""
    found = flags.nonzero().flatten()  # the CPU tensor: no device involved
    size = max(size, found.numel())
    rows = torch.zeros(size, dtype=torch.long)
    rows[: found.numel()] = found
    weight = torch.zeros(size)
    weight[: found.numel()] = 1.0
    return rows, weight


def prepare_batch(input_ids: torch.Tensor, attention_mask: torch.Tensor, probs: torch.Tensor, *, mask_id: int,
                  pad_id: int, mask_prob: float, restrict_ce_to_mask: bool, generator: torch.Generator,
                  length: int | None = None) -> MaskedBatch:
    """Mask a (B, L0) CPU batch (distil.science.masking.mask_tokens on `generator`), pad it to
    `length` (≥ L0; default L0) positions, and list the rows its logits are computed at.

    The row count is fixed for a given (B, length): ⌈mask_prob·B·length⌉ rounded up to a multiple of 8
    with restrict_ce_to_mask (no more can be masked: mask_tokens picks ⌈mask_prob·eligible⌉), else
    B·length (every position, the real ones weighted 1).
    """
    corrupted, labels = mask_tokens(input_ids, probs, mask_id=mask_id, mask_prob=mask_prob, generator=generator)
    b = input_ids.shape[0]
    corrupted = _pad_right(corrupted, length, pad_id)
    attention_mask = _pad_right(attention_mask, length, 0)
    labels = _pad_right(labels, length, -100)
    length = corrupted.shape[1]
    if restrict_ce_to_mask:
        rows, weight = _padded_index((labels != -100).flatten(), round_up(math.ceil(mask_prob * b * length), 8))
    else:
        rows, weight = _padded_index(attention_mask.bool().flatten(), b * length)
    row_labels = labels.flatten()[rows].masked_fill(weight == 0, -100)
    return MaskedBatch(corrupted, attention_mask, labels, rows, weight, row_labels, int(attention_mask.sum()))


def gather_rows(x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """The rows of x (B, L, ...) at `positions`: a (B, L) bool mask (x[positions], a data-dependent
    shape: a host sync on a GPU) or (N,) flat indices b·L + l (index_select: no sync). Returns (N, ...)."""
    if positions.dtype == torch.bool:
        return x[positions]
    return x.flatten(0, 1).index_select(0, positions)


def encoder_mask(attention_mask: torch.Tensor, config) -> torch.Tensor:
    """The (B, 1, L, L) mask transformers builds from a (B, L) padding mask for `config`'s attention
    (bool for sdpa, additive fp32 for eager), built here so that transformers does not check whether
    the batch has padding at all (`padding_mask.all()`: a host sync per forward on a GPU). A 2D mask is
    returned as is for any other attention implementation."""
    impl = getattr(config, "_attn_implementation", None)
    b, n = attention_mask.shape
    keys = attention_mask.bool()[:, None, None, :].expand(b, 1, n, n)
    if impl == "sdpa":
        return keys
    if impl == "eager":
        return torch.zeros(keys.shape, device=keys.device).masked_fill(~keys, torch.finfo(torch.float32).min)
    return attention_mask


class Prefetcher:
    """`get(i)` returns `make(i)`, computed ahead on a background thread for i, i+1, ..., up to
    `depth` items ahead; asking for an index other than the next one restarts the thread there.

    `make` must be a pure function of i that nothing else calls meanwhile (it runs on the thread). A
    bound method is held weakly: the thread does not keep its object (a Distiller and its models)
    alive, and ends once that object is gone."""

    def __init__(self, make, depth: int = 2):
        self._make = weakref.WeakMethod(make) if hasattr(make, "__self__") else (lambda: make)
        self.depth = depth
        self._next, self._thread, self._stop, self._queue = None, None, None, None

    def _run(self, start: int, q: queue.Queue, stop: threading.Event) -> None:
        i = start
        while not stop.is_set():
            make = self._make()
            if make is None:
                return
            try:
                item = make(i)
            except BaseException as e:  # handed to the consumer, raised there
                item = e
            del make
            while not stop.is_set():
                if self._make() is None:
                    return
                try:
                    q.put(item, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if isinstance(item, BaseException):
                return
            i += 1

    def get(self, i: int):
        if i != self._next:
            self.close()
            self._queue, self._stop = queue.Queue(self.depth), threading.Event()
            self._thread = threading.Thread(target=self._run, args=(i, self._queue, self._stop), daemon=True,
                                            name="distil-prefetch")
            self._thread.start()
        item = self._queue.get()
        self._next = i + 1
        if isinstance(item, BaseException):
            self._next = None
            raise item
        return item

    def close(self) -> None:
        """Stop the thread (it finishes the item in hand) and forget what was prepared."""
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
        self._next, self._thread = None, None
