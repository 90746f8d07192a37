"""How noisy is the early-stopping proxy? The standard deviation that `search.early_stopping.tolerance`
is set from (issue 21, point 3: a trial less than one proxy-noise SD below a rung's cutoff is kept).

The proxy fine-tunes each student once, with the first GLUE seed, and scores the held-out selection
slice; two students that are equally good still differ by the fine-tuning seed's luck. This
script takes one student (the undistilled student of the spec's default layer rule, built from the
spec's teacher exactly as a sweep's `init_only` row is) and runs the spec's proxy protocol under
`--seeds` different fine-tuning seeds, no Ray: the SD of its proxy_score over seeds is the noise of
one proxy score. A rung decides on gain_over_init = proxy(student) - proxy(init of its rule), with the
init's score shared by every trial of that rule, so trials of one rule differ by that SD; across rules
the two inits' own noise adds to it.

    python benchmarks/proxy_noise.py sweeps/smoke.yaml [--seeds 5]

Prints each seed's task scores and proxy_score, their mean and sample SD (score points, x100).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from distil import preflight  # noqa: E402
from distil.cli import prepare_teacher_and_corpus  # noqa: E402
from distil.config.layers import parse_layer_key  # noqa: E402
from distil.config.spec import load_spec  # noqa: E402
from distil.evaluation import scores  # noqa: E402
from distil.evaluation.finetune import finetune_and_evaluate  # noqa: E402
from distil.science.student import save_student  # noqa: E402
from distil.search.finetune_runs import proxy_glue, proxy_tasks  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("spec")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--cache-dir", default=preflight.DEFAULT_CACHE_DIR)
    args = ap.parse_args()
    spec = load_spec(args.spec)
    if spec.search.early_stopping is None:
        sys.exit(f"{args.spec}: search.early_stopping is not set; there is no proxy to measure")
    _, teacher_dir, _, _ = prepare_teacher_and_corpus(spec, Path(args.cache_dir).expanduser())
    points = spec.search.points_to_evaluate
    rule = (points[0].get("layer_selection") if points else None) or spec.search.fixed().get("layer_selection") \
        or "every_other"
    glue, tasks = proxy_glue(spec), proxy_tasks(spec)
    rows = []
    with tempfile.TemporaryDirectory() as student:
        save_student(teacher_dir, spec.student.n_layers, parse_layer_key(rule), spec.seed, student)
        for seed in range(args.seeds):
            t0 = time.time()
            runs = [finetune_and_evaluate(student, t, glue.settings(t.name), seed, None) for t in tasks]
            per_task = {r["task"]: scores.selection_score(r) for r in runs}
            rows.append(float(np.mean(list(per_task.values()))))
            print(f"seed {seed}: " + ", ".join(f"{k} {v:.2f}" for k, v in per_task.items())
                  + f" -> proxy_score {rows[-1]:.2f} ({time.time() - t0:.0f} s)", flush=True)
    print(f"init_only-{rule}, {spec.student.n_layers} layers, proxy {[t.name for t in tasks]} "
          f"(train {glue.max_train_examples}, selection slice {glue.settings(tasks[0].name).selection_examples}): "
          f"proxy_score mean {np.mean(rows):.2f}, SD over {len(rows)} seeds {np.std(rows, ddof=1):.2f}")


if __name__ == "__main__":
    main()
