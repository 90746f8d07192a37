"""On one GPU: how fast is distillation, and how many distillation tokens does the paper-default
student need before it beats its own `init_only` row?

The CPU protocol (sweeps/cpu.yaml, 90 steps = 236 k tokens) could not answer the second question:
its paper-default candidate scored -0.07 [-1.35, 1.23] macro against `init_only`
(docs/measurements/2026-11-26-cpu-protocol.md, "Does distillation beat its own starting point?"). This
script runs the same student, loss and optimiser settings much longer, on the worker's own loop
(distil.science.distiller.Distiller with bf16 autocast, as distil.search.train wraps it; one process, no Ray),
saves the student at geometric token budgets, fine-tunes every saved student and the undistilled
`init_only` student under the spec's full GLUE protocol (distil.evaluation.finetune, same tasks, budgets and
seeds), and writes them as a results dir whose leaderboard (distil.report.leaderboard, the same paired
bootstrap) gives each budget's `gain_over_init` with its 95 % interval.

    python benchmarks/gpu_budget.py --out results/gpu-budget                 # spec: sweeps/cpu.yaml
    python benchmarks/gpu_budget.py --teacher-dir DIR --glue DIR --corpus DIR --seconds 150 --out ...

Prints, in order: the GPU's measured bf16 matmul peak; distillation tokens/s and MFU at the
spec's global batch and at a GPU-sized one; the loss along the run; then one leaderboard line per
budget as its fine-tuning finishes (a run cut short still leaves every finished budget in --out).
MFU counts model matmul FLOPs only (distill_throughput.model_flops_per_token).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import torch  # noqa: E402
import yaml  # noqa: E402
from transformers import AutoTokenizer, BertForMaskedLM  # noqa: E402

from distil.report import leaderboard  # noqa: E402
from distil.science.data import load_counts, load_sequences, prepare_corpus  # noqa: E402
from distil.config.settings import LossWeights  # noqa: E402
from distil.science.distill import BatchStream, StudentForDistillation  # noqa: E402
from distil.science.distiller import Distiller  # noqa: E402
from distil.evaluation.finetune import finetune_and_evaluate, prepare_task_data  # noqa: E402
from distil.config.glue import glue_tasks  # noqa: E402
from distil.config.layers import layer_key, parse_layer_key  # noqa: E402
from distil.store.logs import quiet_libraries, to_log_file  # noqa: E402
from distil.science.masking import token_probs  # noqa: E402
from distil.config.spec import load_spec  # noqa: E402
from distil.science.student import build_student, count_parameters, save_student  # noqa: E402
from distil.science.teacher import prepare_teacher, resolve_teacher  # noqa: E402
from distill_throughput import model_flops_per_token  # noqa: E402

H100_BF16_DENSE = 989e12  # NVIDIA H100 SXM datasheet, dense bf16 tensor-core FLOP/s
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"  # cpu only with --allow-cpu (a quick check of the script)


def _sync() -> None:
    if DEVICE == "cuda":
        torch.cuda.synchronize()


def device_name() -> str:
    return torch.cuda.get_device_name() if DEVICE == "cuda" else "cpu"


def bf16_matmul_peak(n: int, repeats: int = 10) -> float:
    """Measured bf16 FLOP/s of an (n×n)·(n×n) product on the GPU: mean of `repeats` after warm-up."""
    a = torch.randn(n, n, device=DEVICE, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=DEVICE, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    _sync()
    t0 = time.perf_counter()
    for _ in range(repeats):
        a @ b
    _sync()
    return 2 * n**3 * repeats / (time.perf_counter() - t0)


def distiller(teacher, tokenizer, sequences, probs, params: dict, distill, batch: int, total_steps: int,
              seed: int) -> Distiller:
    """The worker's loop (distil.science.distiller.Distiller, as distil.search.train wraps it) in one
    process on DEVICE, bf16: a fresh paper-default student (`params`) over batches of `batch`."""
    torch.manual_seed(seed)
    student = build_student(teacher, params["n_layers"], parse_layer_key(params["layer_selection"]))
    weights = LossWeights(**{k: params[k] for k in ("alpha_ce", "alpha_mlm", "alpha_cos", "temperature")})
    return Distiller(teacher, StudentForDistillation(student).to(DEVICE), BatchStream(sequences, batch, seed, 0, 1),
                     probs, weights, distill, total_steps=total_steps, seed=seed, pad_id=tokenizer.pad_token_id,
                     mask_id=tokenizer.mask_token_id, device=DEVICE, bf16=True)


def tokens_per_s(dist: Distiller, steps: int = 200, warmup: int = 200) -> float:
    """Distillation tokens/s of a fresh Distiller `dist` over `steps` steps after `warmup`. The warm-up
    is long because every new sequence length is a new shape for the GPU's kernels: after 10
    warm-up steps an H100 measured 20.8 k tokens/s at batch 32, the long run 87.6 k."""
    for _ in range(warmup):
        dist.step()
    dist.interval()  # reads the device: everything queued so far is done
    t0 = time.perf_counter()
    for _ in range(steps):
        dist.step()
    tokens = dist.interval()["tokens"]
    return tokens / (time.perf_counter() - t0)


def _init_worker(log_dir: str) -> None:
    torch.set_num_threads(2)
    to_log_file(log_dir)  # the fine-tuning runs' library output goes to <out>/logs/workers.log


def finetune_row(pool, row_dir: Path, glue, tasks, caches: dict) -> list[dict]:
    """Fine-tune and score `row_dir/student` under the protocol `glue` (every task and seed, in
    parallel on the GPU); predictions to `row_dir/predictions`. Returns the runs."""
    futures = [pool.submit(finetune_and_evaluate, str(row_dir / "student"), t, glue.settings(t.name), s,
                           str(row_dir / "predictions"), data_cache=caches[t.name])
               for t in tasks for s in glue.seeds_for(t)]
    return [f.result() for f in futures]


def write_json(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2, default=str))


def spec_with(args) -> tuple:
    """The spec with this run's local overrides (teacher dir, GLUE dir, corpus, GPU fine-tuning)."""
    raw = yaml.safe_load(Path(args.spec).read_text())
    if args.teacher_dir:
        raw["teacher"]["model"] = args.teacher_dir
    if args.glue:
        raw["glue"]["data"] = args.glue
    if args.corpus:
        raw["corpus"]["path"] = args.corpus
    raw["corpus"]["max_sequences"] = args.max_sequences
    if args.tasks:
        raw["glue"]["tasks"] = args.tasks.split(",")
    raw["glue"]["use_gpu"] = True
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "spec.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    return load_spec(out / "spec.yaml"), raw


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--spec", default=str(ROOT / "sweeps" / "cpu.yaml"),
                   help="protocol, teacher, corpus, paper defaults")
    p.add_argument("--teacher-dir",
                   help="a BertForMaskedLM dir with its MLM head (else the spec's teacher, head fitted)")
    p.add_argument("--glue", help="GLUE dir (else the spec's glue.data)")
    p.add_argument("--corpus", help="corpus dir of <split>.parquet (else the spec's corpus.path)")
    p.add_argument("--tasks", help="comma-separated GLUE tasks (else the spec's glue.tasks)")
    p.add_argument("--max-sequences", type=int, default=1_000_000)
    p.add_argument("--seconds", type=float, default=150, help="distillation wall time of the long run")
    p.add_argument("--budgets", type=int, default=5, help="saved students, at total/4^k steps, k < budgets")
    p.add_argument("--big-batch", type=int, default=256, help="the GPU-sized batch of the throughput line")
    p.add_argument("--workers", type=int, default=6, help="fine-tuning processes sharing the GPU")
    p.add_argument("--deadline", type=float, default=480,
                   help="seconds from start after which no new row is fine-tuned")
    p.add_argument("--cache-dir", default="~/.cache/distil-sweep")
    p.add_argument("--allow-cpu", action="store_true",
                   help="run without a GPU (tiny settings only: a check of the script)")
    p.add_argument("--out", default=str(ROOT / "results" / "gpu-budget"))
    args = p.parse_args()
    start = time.time()
    quiet_libraries()
    if DEVICE == "cpu" and not args.allow_cpu:
        sys.exit("gpu_budget.py: no CUDA device; run it on a GPU machine (--allow-cpu: a quick check of the script)")
    out, cache = Path(args.out), Path(args.cache_dir).expanduser()
    spec, raw = spec_with(args)
    d = spec.distill
    batch = d.batch_size * d.num_workers * d.grad_accumulation  # the spec's global batch
    source = resolve_teacher(spec.teacher.model)
    tokenizer = AutoTokenizer.from_pretrained(source)
    corpus_dir = prepare_corpus(spec.corpus, tokenizer, cache, spec.teacher.head_fit.eval_sequences)
    teacher_dir, _ = prepare_teacher(source, corpus_dir, spec.teacher.head_fit, cache, spec.seed)
    teacher = BertForMaskedLM.from_pretrained(teacher_dir, dtype=torch.float32).to(DEVICE).eval()
    for q in teacher.parameters():
        q.requires_grad = False
    depth = spec.student.n_layers if isinstance(spec.student.n_layers, int) else teacher.config.num_hidden_layers // 2
    params = {**spec.search.fixed(), **spec.search.points_to_evaluate[0], "n_layers": depth}
    params["layer_selection"] = layer_key(params["layer_selection"])
    print(f"{device_name()}; spec {args.spec}: paper defaults {params}, global batch {batch}, lr {d.lr}", flush=True)
    sequences = load_sequences(corpus_dir)
    probs = token_probs(load_counts(corpus_dir), d.mlm_smoothing, tokenizer.all_special_ids).to(DEVICE)
    mean_len = float(statistics.mean(sequences.lengths))
    print(f"corpus: {len(sequences):,} sequences, {int(sum(sequences.lengths)):,} tokens (mean {mean_len:.0f}); "
          f"{time.time() - start:.0f} s", flush=True)

    peak = bf16_matmul_peak(8192 if DEVICE == "cuda" else 512)
    flops = model_flops_per_token(teacher.config, params["n_layers"], mean_len, d.mlm_mask_prob)
    speed = {}
    for b in (batch, args.big_batch):
        speed[b] = tokens_per_s(distiller(teacher, tokenizer, sequences, probs, params, d, b, 1000, spec.seed))
        print(f"batch {b:4d} x <= {spec.corpus.max_seq_len}: {speed[b]:10,.0f} distillation tokens/s; MFU "
              f"{100 * speed[b] * flops / peak:.1f} % of the measured bf16 peak {peak / 1e12:.0f} TFLOP/s, "
              f"{100 * speed[b] * flops / H100_BF16_DENSE:.1f} % of the H100 datasheet's 989", flush=True)
    write_json(out / "throughput.json", {"device": device_name(), "bf16_matmul_peak": peak,
                                         "model_flops_per_token": flops, "mean_len": mean_len,
                                         "tokens_per_s": {str(b): v for b, v in speed.items()}})

    # The long run: the spec's batch, as many steps as fit in --seconds at the measured speed.
    total = max(4 ** (args.budgets - 1), int(args.seconds * speed[batch] / (batch * mean_len)))
    saves = sorted({max(1, total // 4**k) for k in range(args.budgets)})
    print(f"distilling {total} steps (~{total * batch * mean_len / 1e6:.1f} M tokens), "
          f"students saved after steps {saves}", flush=True)
    dist = distiller(teacher, tokenizer, sequences, probs, params, d, batch, total, spec.seed)
    rows, t0 = [], time.time()
    _sync()
    while dist.steps_done < total:
        dist.step()
        if dist.steps_done in saves:
            loss = dist.interval()["terms"]["loss"]  # the mean since the previous save
            tokens = dist.tokens
            name = f"distil-{tokens // 1000:07d}k"
            cand = out / "candidates" / name
            dist.student.save_pretrained(cand / "student")
            tokenizer.save_pretrained(cand / "student")
            write_json(cand / "config.json", {"params": params, "started": time.time(), "label": name})
            rows.append((cand, {"kind": "student", "params": params,
                                "distill": {"loss": loss, "step": dist.steps_done, "tokens": tokens},
                                "n_params": count_parameters(dist.student.distilbert)}))
            print(f"  step {dist.steps_done:6d}  tokens {tokens:12,d}  loss {loss:.3f}  "
                  f"{time.time() - t0:.0f} s", flush=True)

    _sync()
    rate = tokens / (time.time() - t0)
    print(f"long run: {rate:,.0f} distillation tokens/s at batch {batch} (student saves included), MFU "
          f"{100 * rate * flops / peak:.2f} % of the measured bf16 peak", flush=True)
    init_dir = out / "references" / f"init_only-{params['layer_selection']}"
    n_params = save_student(teacher_dir, params["n_layers"], parse_layer_key(params["layer_selection"]), spec.seed,
                            str(init_dir / "student"))
    rows = [(init_dir, {"kind": "reference", "params": {k: params[k] for k in ("layer_selection", "n_layers")},
                        "n_params": n_params}),
            rows[-1], *rows[:-1]]  # init_only first, then the longest run, then the budgets from the smallest up
    del teacher, dist
    if DEVICE == "cuda":
        torch.cuda.empty_cache()

    tasks = glue_tasks(spec.glue.data, spec.glue.tasks)
    caches = {t.name: prepare_task_data(t, spec.glue.settings(t.name), tokenizer, cache) for t in tasks}
    (out / "spec.json").write_text(json.dumps(spec.model_dump(mode="json"), default=str))
    ctx = multiprocessing.get_context("spawn")  # CUDA in the workers: no fork
    with ProcessPoolExecutor(args.workers, mp_context=ctx, initializer=_init_worker,
                             initargs=(str(out / "logs"),)) as pool:
        for row_dir, info in rows:
            if time.time() - start > args.deadline:
                print(f"deadline: {row_dir.name} not fine-tuned", flush=True)
                continue
            t1 = time.time()
            runs = finetune_row(pool, row_dir, spec.glue, tasks, caches)
            write_json(row_dir / "result.json",
                       {**info, "glue": runs, "finetune_seconds": sum(r["seconds"] for r in runs)})
            board = leaderboard.load(out).frame
            show = [c for c in ("model", "macro_score", "gain_over_init", "gain_over_init_lo", "gain_over_init_hi")
                    if c in board]
            print(f"{row_dir.name} fine-tuned in {time.time() - t1:.0f} s\n{board[show].to_string(index=False)}",
                  flush=True)
    print(f"total {time.time() - start:.0f} s", flush=True)


if __name__ == "__main__":
    main()
