"""Ray Train wiring: distil one student with a `TorchTrainer` of `num_workers` DDP workers.

Supports: gradient accumulation (DDP syncs once per optimizer step), bf16 autocast, a token
budget per candidate (equal compute across candidates), checkpoint/resume. Not supported:
resuming with a different number of workers (the batch of a step depends on the world size).

Each worker loads the (head-fitted) teacher as its family's class (distil.config.families: BERT,
RoBERTa, GPT-2; `load_models`) and the cached token sequences, builds the same student (same seed), and
runs a `distil.science.distiller.Distiller` (the loop, Ray-free). Rank 0 reports a checkpoint every
`checkpoint_every` steps, at the end of each call (a rung of early stopping) and at the end: the student
as a Hugging Face dir (safetensors + tokenizer) plus `train_state.pt` (`Distiller.state_dict()`:
optimizer, scheduler, step, tokens seen, and the learned projections of the layer-wise loss terms, which
are never part of the student). A restarted worker group (`FailureConfig`), a later rung, or a trial
restarted after the driver died resumes from the last checkpoint; masks, dropout and batches are
functions of the step, so the resumed run repeats the uninterrupted one. A NaN/inf loss (seen as a
non-finite gradient norm) raises NonFiniteLoss at once on a CPU, at the next report on a GPU (the check
is read there, Distiller's deferred mode) ("loss is nan at step 37").
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, fields
from pathlib import Path

import ray.train
import torch
from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchConfig, TorchTrainer
from transformers import AutoConfig, AutoTokenizer

from distil.config.families import MLM, Family, family_of
from distil.config.layers import parse_layer_key
from distil.config.settings import LOSS_WEIGHT_NAMES, LossWeights, StudentShape
from distil.config.spec import DistillSpec
from distil.science.data import load_counts, load_sequences
from distil.science.distill import BatchStream, wrap_student
from distil.science.distiller import Distiller, NonFiniteLoss
from distil.science.families import FamilyTokens, model_class, save_model, token_ids
from distil.science.masking import token_probs
from distil.science.precision import enable_tf32, resolve_bf16
from distil.science.student import build_student
from distil.store.logs import to_log_file
from distil.store.records import live_file, write_json


@dataclass(frozen=True)
class DistillJob:
    """What a candidate's Ray Train run needs besides its searched parameters (typed, picklable:
    it crosses the Ray boundary as is, never as a dict rebuilt on the other side)."""

    teacher_dir: str
    corpus_dir: str
    distill: DistillSpec
    storage: str  # absolute dir (or URI) that holds the Train runs' checkpoints
    seed: int = 0
    log_dir: str | None = None  # where the workers' output goes (distil.store.logs); None: the console
    verbose: bool = False
    fail_once_at_step: int | None = None  # fault injection for the resume tests
    fail_once_marker: str | None = None


@dataclass(frozen=True)
class CandidateParams:
    """One candidate: the distillation objective and the student's depth, init and width."""

    weights: LossWeights
    layer_selection: str  # canonical key (distil.config.layers.layer_key)
    n_layers: int
    shape: StudentShape = StudentShape()  # the teacher's width unless set

    @classmethod
    def from_values(cls, values: dict) -> CandidateParams:
        """From flat values (a trial's merged config, or to_json()'s dict); alpha_mse, the layer-wise
        terms' settings and the width take their defaults when absent.

        Raises:
            KeyError: a loss weight, layer_selection or n_layers is missing.
        """
        shape = StudentShape(**{f.name: values[f.name] for f in fields(StudentShape) if f.name in values})
        return cls(LossWeights(**{k: values[k] for k in LOSS_WEIGHT_NAMES if k in values}),
                   values["layer_selection"], values["n_layers"], shape)

    def to_json(self) -> dict:
        """The flat `params` of config.json and result.json, keys in the order sweeps have always written;
        then the layer-wise terms' settings and the width only where they differ from their defaults
        (absent: the default), so a resumed older sweep's params compare equal."""
        w = self.weights
        newer = {f.name: getattr(w, f.name) for f in fields(LossWeights)
                 if f.name not in ("alpha_ce", "alpha_mlm", "alpha_cos", "temperature", "alpha_mse")
                 and getattr(w, f.name) != f.default}
        return {"alpha_ce": w.alpha_ce, "alpha_mlm": w.alpha_mlm, "alpha_cos": w.alpha_cos,
                "temperature": w.temperature, "layer_selection": self.layer_selection, "n_layers": self.n_layers,
                "alpha_mse": w.alpha_mse, **newer, **self.shape.given()}


def train_loop_per_worker(cfg: dict) -> None:
    """Ray Train worker entry point. cfg: {'job': DistillJob, 'params': CandidateParams,
    'stop_at_fraction': share of the planned steps after which this call stops (a rung)}.

    The loop itself is distil.science.distiller.Distiller; this adds what is Ray's: the worker's
    place, prepare_model (DDP), the checkpoint to resume from, reports with checkpoints, fault injection."""
    started = time.time()  # once the worker group runs: its compute, not the wait for CPUs
    job: DistillJob = cfg["job"]
    params: CandidateParams = cfg["params"]
    if job.log_dir:
        to_log_file(job.log_dir, job.verbose)
    d = job.distill
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = ray.train.torch.get_device()
    bf16 = resolve_bf16(d.bf16, device)  # the spec's precision, decided here for this worker's device
    enable_tf32(device)
    models = load_models(job.teacher_dir, params, job.seed, device)
    tokenizer, teacher, tokens = models.tokenizer, models.teacher, models.tokens
    checkpoint = ray.train.get_checkpoint()
    state = None
    if checkpoint:
        with checkpoint.as_directory() as ckpt:
            student = models.load_student(ckpt)
            # weights_only: the checkpoint may sit on shared storage; never unpickle code from it.
            # map_location: each rank's own device (saved from rank 0's, which would be GPU 0 for all).
            state = torch.load(Path(ckpt) / "train_state.pt", map_location=device, weights_only=True)
    else:
        student = models.student
    # Without a term on the logits some parameters get no gradient (the MLM head with hidden-state or
    # relation terms alone): DDP then fails at the second step unless told to look for them, a
    # traversal of the autograd graph per step that the usual objectives need not pay.
    model = ray.train.torch.prepare_model(
        wrap_student(student, params.weights, teacher.config),
        parallel_strategy_kwargs={"find_unused_parameters": not params.weights.reads_logits})
    sequences = load_sequences(job.corpus_dir)
    total_steps = planned_steps(d, sequences.lengths, world)
    stop_step = max(1, math.ceil(cfg.get("stop_at_fraction", 1.0) * total_steps - 1e-9))
    probs = models.masking_probs(job.corpus_dir, d.mlm_smoothing)
    dist = Distiller(teacher, model, BatchStream(sequences, d.batch_size, job.seed, rank, world), probs,
                     params.weights, d, total_steps=total_steps, seed=job.seed, pad_id=tokens.pad,
                     mask_id=tokens.mask, device=device, bf16=bf16, rank=rank, world=world)
    del models
    del teacher  # with bf16 the Distiller holds a copy with bf16 linear layers: free the fp32 ones
    if state:
        dist.load_state_dict(state)
    start_step, t0 = dist.steps_done, time.time()
    while dist.steps_done < stop_step:
        _maybe_fail(job, dist.steps_done, rank)
        done = dist.steps_done + 1
        try:
            dist.step()
            # On a GPU the non-finite check is deferred to this read (no host sync per step).
            interval = dist.interval() if done % d.checkpoint_every == 0 or done in (stop_step, total_steps) else None
        except NonFiniteLoss as e:
            # Every rank stops at this step (the gradient norm is the same on all of them after DDP's
            # all-reduce). The run reports the reason with a checkpoint of the weights before this step
            # (Ray Train's result carries the metrics of its latest checkpoint), so a retry meets the
            # same loss at once instead of redoing steps; distill_student raises.
            dist.close()
            _report({"nonfinite": str(e), "step": dist.steps_done}, dist, tokenizer, rank)
            return
        if interval is not None:
            metrics = {**interval["terms"], "step": done, "total_steps": total_steps, "resumed_from_step": start_step,
                       "tokens": dist.tokens, "run_seconds": time.time() - started,
                       "tokens_per_s": interval["tokens"] / (time.time() - t0), "bf16": bf16}
            _report(metrics, dist, tokenizer, rank, cfg.get("live_file"))
            t0 = time.time()
    dist.close()


@dataclass
class WorkerModels:
    """What a distillation worker loads, by the teacher's family (distil.config.families): its tokenizer
    and token ids, the frozen teacher (`family.teacher_class`) on the worker's device in eval mode, and
    the student built from it by the candidate's layer rule (seeded: the same on every rank)."""

    family: Family
    tokenizer: object
    tokens: FamilyTokens
    teacher: torch.nn.Module
    student: torch.nn.Module

    def load_student(self, checkpoint_dir: str | os.PathLike) -> torch.nn.Module:
        """The student saved in a checkpoint dir (`family.student_class`: DistilBertForMaskedLM for BERT)."""
        return model_class(self.family.student_class).from_pretrained(checkpoint_dir)

    def masking_probs(self, corpus_dir: str | os.PathLike, smoothing: float) -> torch.Tensor | None:
        """(V,) masking weights of a masked-LM family (special tokens 0; distil.science.masking.token_probs);
        None for a causal one, which masks nothing."""
        if self.family.objective != MLM:
            return None
        return token_probs(load_counts(corpus_dir), smoothing, list(self.tokens.special))


def load_models(teacher_dir: str, params: CandidateParams, seed: int, device: torch.device | str = "cpu"
                ) -> WorkerModels:
    """The tokenizer, frozen teacher and initial student of a candidate's run (WorkerModels), Ray-free.

    Raises:
        SpecError (a ValueError): the teacher's model_type is outside the family table.
        ValueError: its tokenizer lacks the family's special tokens (distil.science.families.token_ids).
    """
    tokenizer = AutoTokenizer.from_pretrained(teacher_dir)
    family = family_of(AutoConfig.from_pretrained(teacher_dir).model_type, f"teacher.model: {teacher_dir}")
    tokens = token_ids(family, tokenizer)
    teacher = model_class(family.teacher_class).from_pretrained(teacher_dir).to(device).eval()
    for p in teacher.parameters():
        p.requires_grad = False
    torch.manual_seed(seed)  # identical initial student on every rank
    student = build_student(teacher, params.n_layers, parse_layer_key(params.layer_selection), params.shape)
    return WorkerModels(family, tokenizer, tokens, teacher, student)


def planned_steps(d: DistillSpec, lengths: list[int], world: int) -> int:
    """Optimizer steps of a run: `d.steps`, or enough to consume `d.token_budget` real tokens.

    With a budget, steps = ceil(budget / (mean sequence length · batch_size · world · accumulation)),
    the same for every candidate of a sweep: equal compute, whatever the loss weights.
    """
    if d.token_budget is None:
        return d.steps
    per_step = sum(lengths) / len(lengths) * d.batch_size * world * d.grad_accumulation
    return max(1, math.ceil(d.token_budget / per_step))


def _maybe_fail(job: DistillJob, step: int, rank: int) -> None:
    """Fault injection for the resume test: the last rank raises once at `fail_once_at_step`."""
    marker = job.fail_once_marker
    if marker and step == job.fail_once_at_step and rank == ray.train.get_context().get_world_size() - 1:
        if not os.path.exists(marker):
            Path(marker).touch()
            raise RuntimeError(f"injected worker failure at step {step}")


def _report(metrics: dict, dist: Distiller, tokenizer, rank: int, live_file: str | None = None) -> None:
    """All ranks report; only rank 0 attaches a checkpoint (the weights are identical under DDP)
    and writes the metrics to `live_file` (the sweep's console shows them while the run goes on:
    Tune's function API cannot take intermediate reports from Train without losing the
    scheduler's say over when a trial stops)."""
    if rank != 0:
        ray.train.report(metrics)
        return
    if live_file:
        write_json(live_file, {**metrics, "time": time.time()})
    with tempfile.TemporaryDirectory() as tmp:
        save_model(dist.student, tokenizer, tmp)  # the student alone (the projections are in
        # train_state.pt); GPT-2's tokenizer with a pad token
        torch.save(dist.state_dict(), Path(tmp) / "train_state.pt")
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))


def distill_student(run_name: str, params: CandidateParams, job: DistillJob, student_dir: Path,
                   stop_at_fraction: float = 1.0) -> dict:
    """Run (or continue) one candidate's distillation with Ray Train up to `stop_at_fraction` of its
    planned steps, and copy the student at that point to `student_dir` (an HF dir, no optimizer state).

    The Train run is named `run_name` under `job.storage`. Calling again with the same name resumes
    from the run's last checkpoint (Ray Train restores its checkpoint manager by name): that is how
    the rungs of early stopping continue one another, and how a trial restarted after a crash
    continues its distillation instead of starting over. Returns the last reported metrics
    (step, total_steps, resumed_from_step, tokens (cumulative real tokens), tokens_per_s, run_seconds
    (wall seconds of this call's worker group, loading included: its compute, not the wait for
    CPUs), bf16 (whether the workers ran in bf16: distill.bf16 resolved on their device), loss terms).

    Raises:
        NonFiniteLoss: the loss became NaN or inf (the run stops at that step, no retries).
    """
    d = job.distill
    # The reference rows' GLUE tasks, submitted before the search, can hold every CPU for minutes;
    # the worker group then waits for them. Ray Train retries a timed-out start forever
    # (controller_failure_limit -1), so the 60 s default only prints a traceback a minute while
    # waiting; Ray still warns about resource requests the cluster can never satisfy.
    os.environ.setdefault("RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S", "1800")
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"job": job, "params": params, "stop_at_fraction": stop_at_fraction,
                           "live_file": str(live_file(job.log_dir, run_name)) if job.log_dir else None},
        scaling_config=ScalingConfig(num_workers=d.num_workers, use_gpu=d.use_gpu),
        torch_config=TorchConfig(backend=d.backend),
        run_config=RunConfig(
            name=run_name,
            storage_path=job.storage,
            checkpoint_config=CheckpointConfig(num_to_keep=1),
            failure_config=FailureConfig(max_failures=d.max_failures),
        ),
    )
    result = trainer.fit()
    if result.metrics and "nonfinite" in result.metrics:
        raise NonFiniteLoss(result.metrics["nonfinite"])
    with result.checkpoint.as_directory() as ckpt:
        tmp = Path(str(student_dir) + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(ckpt, tmp, ignore=shutil.ignore_patterns("train_state.pt"))
        shutil.rmtree(student_dir, ignore_errors=True)
        os.replace(tmp, student_dir)
    return dict(result.metrics)
