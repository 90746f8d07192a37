"""Which precision a run computes in: `bf16: true | false | auto` of the spec, resolved per device.

The rule (`resolve_bf16`):
  - `true`: bf16 autocast, whatever the device (an explicit choice is honoured; on a device without
    bf16 units it is emulated, slower than fp32, but it runs);
  - `false`: fp32;
  - `auto`: bf16 where the device computes bf16 matmuls natively, fp32 otherwise:
      CUDA: `torch.cuda.is_bf16_supported()` (Ampere and newer);
      CPU: the x86 flags `avx512_bf16` (AVX512-BF16, e.g. AMD Zen 4+, Intel Cooper Lake) or
      `amx_bf16` (Intel AMX, Sapphire Rapids+), read from /proc/cpuinfo. Not from
      `torch.backends.cpu.get_cpu_capability()`: it says "AVX512" on a CPU with AVX512-BF16 and on
      one without (torch 2.13), and torch 2.13 has no public bf16 probe for the CPU. Without
      /proc/cpuinfo (macOS, Windows) or on Arm the CPU counts as without bf16 (auto: fp32).
      Other devices (mps, ...): fp32.

bf16 keeps fp32's exponent range, so no loss scaling is needed (unlike fp16); weights, optimizer
state and the loss stay fp32, only autocast's ops (matmuls, linear layers) run in bf16. On CUDA
`enable_tf32` lets the fp32 matmuls that remain (all of them under `bf16: false`) use TF32 tensor
cores (Ampere+): a 10-bit mantissa, finer than the 7 bits bf16 autocast already accepts.
"""

from __future__ import annotations

from pathlib import Path

import torch

from distil.config.settings import Bf16
CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # x86 /proc/cpuinfo flags of native bf16 dot products


def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> frozenset[str]:
    """The CPU's feature flags (the first `flags` line of /proc/cpuinfo); empty when the file is
    missing or has no such line (not Linux, or not x86)."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return frozenset(value.split())
    return frozenset()


def bf16_support(device: torch.device | str, flags: frozenset[str] | None = None,
                 cuda_bf16: bool | None = None) -> tuple[bool, str]:
    """(whether `device` computes bf16 natively, why in a few words), e.g. (True, "cpu has avx512_bf16").

    flags: the CPU's flags (default: cpu_flags()); cuda_bf16: whether the GPU has bf16 (default:
    torch.cuda.is_bf16_supported()). Pass them to decide for a machine other than this one (tests).
    """
    device = torch.device(device)
    if device.type == "cuda":
        ok = torch.cuda.is_bf16_supported() if cuda_bf16 is None else cuda_bf16
        return ok, "the GPU has bf16" if ok else "the GPU has no bf16 (pre-Ampere)"
    if device.type == "cpu":
        flags = cpu_flags() if flags is None else flags
        found = [f for f in CPU_BF16_FLAGS if f in flags]
        return (True, f"cpu has {found[0]}") if found else (False, f"cpu has neither {' nor '.join(CPU_BF16_FLAGS)}")
    return False, f"no bf16 rule for {device.type}"


def resolve_bf16(setting: Bf16, device: torch.device | str, flags: frozenset[str] | None = None,
                 cuda_bf16: bool | None = None) -> bool:
    """Whether to run in bf16 on `device`: `setting` if it is a bool, else (auto) bf16_support's answer.

    Raises:
        ValueError: `setting` is neither a bool nor "auto".
    """
    return describe(setting, device, flags, cuda_bf16)[0]


def describe(setting: Bf16, device: torch.device | str, flags: frozenset[str] | None = None,
             cuda_bf16: bool | None = None) -> tuple[bool, str]:
    """(resolve_bf16's answer, the console text for it), e.g. (True, "bf16 (auto: cpu has avx512_bf16)")
    or (False, "fp32 (bf16: false)").

    Raises:
        ValueError: `setting` is neither a bool nor "auto".
    """
    if isinstance(setting, bool):
        return setting, f"{'bf16' if setting else 'fp32'} (bf16: {str(setting).lower()})"
    if setting != "auto":
        raise ValueError(f"bf16 is true, false or auto, not {setting!r}")
    ok, why = bf16_support(device, flags, cuda_bf16)
    return ok, f"{'bf16' if ok else 'fp32'} (auto: {why})"


def enable_tf32(device: torch.device | str) -> None:
    """On CUDA, let fp32 matmuls use TF32 tensor cores (process-wide); a no-op on other devices, so a
    CPU run's fp32 stays the fp32 it measured."""
    if torch.device(device).type == "cuda":
        torch.set_float32_matmul_precision("high")  # sets torch.backends.cuda.matmul.allow_tf32


def sweep_line(distill: Bf16, distill_gpu: bool, finetune: Bf16, finetune_gpu: bool) -> str:
    """The sweep's one console line on precision, decided on this (the driver's) machine, e.g.
    "precision: bf16 (auto: cpu has avx512_bf16) for distillation and fine-tuning".

    A GPU setting on a driver without CUDA (a CPU head node of a GPU cluster) cannot be decided here:
    the line says the workers decide; each run records what it used (`bf16` in its metrics)."""
    def one(setting: Bf16, gpu: bool) -> str:
        if gpu and setting == "auto" and not torch.cuda.is_available():
            return "bf16 where the workers' GPUs have it (auto: decided on each worker)"
        return describe(setting, "cuda" if gpu else "cpu")[1]

    d, f = one(distill, distill_gpu), one(finetune, finetune_gpu)
    if d == f:
        return f"precision: {d} for distillation and fine-tuning"
    return f"precision: distillation {d}, fine-tuning {f}"
