"""Ray Train wiring: distil one student with a `TorchTrainer` of `num_workers` DDP workers.

Supports: gradient accumulation (DDP syncs once per optimizer step), bf16 autocast, a token
budget per candidate (equal compute across candidates), checkpoint/resume. Not supported:
resuming with a different number of workers (the batch of a step depends on the world size).

Each worker loads the (head-fitted) teacher and the cached token sequences, builds the same
student (same seed), and runs `distil.distill.distill_step`. Rank 0 reports a checkpoint every
`checkpoint_every` steps and at the end: the student as a Hugging Face dir (safetensors +
tokenizer) plus `train_state.pt` (optimizer, scheduler, step). A restarted worker group
(`FailureConfig`) resumes from the last checkpoint; masks, dropout and batches are functions of
the step, so the resumed run repeats the uninterrupted one.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import tempfile
import time
from pathlib import Path

import ray.train
import torch
from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchConfig, TorchTrainer
from transformers import AutoTokenizer, BertForMaskedLM, DistilBertForMaskedLM, get_linear_schedule_with_warmup

from distil.data import load_counts, load_sequences
from distil.distill import BatchStream, LossWeights, StudentForDistillation, distill_step, step_seed
from distil.masking import token_probs
from distil.student import build_student
from distil.spec import DistillSpec, parse_layer_key


def train_loop_per_worker(cfg: dict) -> None:
    """Ray Train worker entry point; `cfg` is built by `distil_student` (plain, picklable values)."""
    d = DistillSpec(**cfg["distill"])
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = ray.train.torch.get_device()
    tokenizer = AutoTokenizer.from_pretrained(cfg["teacher_dir"])
    teacher = BertForMaskedLM.from_pretrained(cfg["teacher_dir"]).to(device).eval()
    for p in teacher.parameters():
        p.requires_grad = False

    torch.manual_seed(cfg["seed"])  # identical initial student on every rank
    student = build_student(teacher, cfg["n_layers"], parse_layer_key(cfg["layer_selection"]))
    start_step = 0
    checkpoint = ray.train.get_checkpoint()
    state = None
    if checkpoint:
        with checkpoint.as_directory() as ckpt:
            student = DistilBertForMaskedLM.from_pretrained(ckpt)
            state = torch.load(Path(ckpt) / "train_state.pt", weights_only=False)
        start_step = state["step"]
    model = ray.train.torch.prepare_model(StudentForDistillation(student))
    sequences = load_sequences(cfg["corpus_dir"])
    total_steps = planned_steps(d, sequences.lengths, world)
    opt = torch.optim.AdamW(model.parameters(), lr=d.lr, weight_decay=d.weight_decay)
    sched = get_linear_schedule_with_warmup(opt, math.ceil(d.warmup_ratio * total_steps), total_steps)
    if state:
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])

    probs = token_probs(load_counts(cfg["corpus_dir"]), d.mlm_smoothing, tokenizer.all_special_ids).to(device)
    stream = BatchStream(sequences, d.batch_size, cfg["seed"], rank, world)
    weights = LossWeights(**{k: cfg[k] for k in ("alpha_ce", "alpha_mlm", "alpha_cos", "alpha_mse", "temperature") if k in cfg})
    accum = d.grad_accumulation
    sums, tokens, t0, interval_start = {}, 0, time.time(), start_step
    for step in range(start_step, total_steps):
        model.train()
        for micro in range(step * accum, (step + 1) * accum):
            _maybe_fail(cfg, step, rank)
            seed = step_seed(cfg["seed"], micro, rank, world)
            torch.manual_seed(seed)  # dropout
            ids, attn = stream(micro, tokenizer.pad_token_id)
            sync = micro == (step + 1) * accum - 1  # all-reduce gradients once per optimizer step
            with (contextlib.nullcontext() if sync or world == 1 else model.no_sync()), \
                    torch.autocast(device.type, dtype=torch.bfloat16, enabled=d.bf16):
                terms = distill_step(
                    teacher, model, ids.to(device), attn.to(device), probs, weights,
                    mask_id=tokenizer.mask_token_id, mask_prob=d.mlm_mask_prob,
                    restrict_ce_to_mask=d.restrict_ce_to_mask, generator=torch.Generator().manual_seed(seed),
                )
                (terms["loss"] / accum).backward()
            tokens += int(attn.sum())
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach()) / accum
        torch.nn.utils.clip_grad_norm_(model.parameters(), d.max_grad_norm)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        done = step + 1
        if done % d.checkpoint_every == 0 or done == total_steps:
            metrics = {k: v / (done - interval_start) for k, v in sums.items()}
            metrics.update(step=done, total_steps=total_steps, resumed_from_step=start_step,
                           tokens_per_s=tokens * world / (time.time() - t0))
            _report(metrics, model, tokenizer, opt, sched, done, rank)
            sums, tokens, t0, interval_start = {}, 0, time.time(), done


def planned_steps(d: DistillSpec, lengths: list[int], world: int) -> int:
    """Optimizer steps of a run: `d.steps`, or enough to consume `d.token_budget` real tokens.

    With a budget, steps = ceil(budget / (mean sequence length · batch_size · world · accumulation)),
    the same for every candidate of a sweep: equal compute, whatever the loss weights.
    """
    if d.token_budget is None:
        return d.steps
    per_step = sum(lengths) / len(lengths) * d.batch_size * world * d.grad_accumulation
    return max(1, math.ceil(d.token_budget / per_step))


def _maybe_fail(cfg: dict, step: int, rank: int) -> None:
    """Fault injection for the resume test: the last rank raises once at `fail_once_at_step`."""
    marker = cfg.get("fail_once_marker")
    if marker and step == cfg["fail_once_at_step"] and rank == ray.train.get_context().get_world_size() - 1:
        if not os.path.exists(marker):
            Path(marker).touch()
            raise RuntimeError(f"injected worker failure at step {step}")


def _report(metrics, model, tokenizer, opt, sched, step, rank) -> None:
    """All ranks report; only rank 0 attaches a checkpoint (the weights are identical under DDP)."""
    if rank != 0:
        ray.train.report(metrics)
        return
    with tempfile.TemporaryDirectory() as tmp:
        student = getattr(model, "module", model).student
        student.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        torch.save({"optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "step": step}, Path(tmp) / "train_state.pt")
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))


def distil_student(run_name: str, params: dict, ctx: dict, student_dir: Path) -> dict:
    """Run one candidate's distillation with Ray Train and copy the final student to `student_dir`.

    params: alpha_ce, alpha_mlm, alpha_cos, temperature, layer_selection (canonical key).
    ctx: teacher_dir, corpus_dir, n_layers, seed, distill (DistillSpec dict), storage (abs path).
    The Train run is named `run_name` under `ctx['storage']`, so a restarted trial resumes it.
    Returns the last reported metrics.
    """
    d = DistillSpec(**ctx["distill"])
    keys = ("teacher_dir", "corpus_dir", "n_layers", "seed", "distill", "fail_once_at_step", "fail_once_marker")
    cfg = {**params, **{k: ctx[k] for k in keys if k in ctx}}
    # The reference rows' GLUE tasks, submitted before the search, can hold every CPU for minutes;
    # the worker group then waits for them. Ray Train retries a timed-out start forever
    # (controller_failure_limit -1), so the 60 s default only prints a traceback a minute while
    # waiting; Ray still warns about resource requests the cluster can never satisfy.
    os.environ.setdefault("RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S", "1800")
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config=cfg,
        scaling_config=ScalingConfig(num_workers=d.num_workers, use_gpu=d.use_gpu),
        torch_config=TorchConfig(backend=d.backend),
        run_config=RunConfig(
            name=run_name,
            storage_path=ctx["storage"],
            checkpoint_config=CheckpointConfig(num_to_keep=1),
            failure_config=FailureConfig(max_failures=d.max_failures),
        ),
    )
    result = trainer.fit()
    with result.checkpoint.as_directory() as ckpt:
        tmp = Path(str(student_dir) + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(ckpt, tmp, ignore=shutil.ignore_patterns("train_state.pt"))
        shutil.rmtree(student_dir, ignore_errors=True)
        os.replace(tmp, student_dir)
    return dict(result.metrics)
