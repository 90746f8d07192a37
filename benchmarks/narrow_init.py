"""How narrow can a weight-selected student be and still fine-tune? The width sweep narrow.yaml's shape
was chosen by (issue 25).

Weight selection (Xu et al., "Initializing Models with Larger Ones", ICLR 2024; distil.science.student)
keeps evenly spaced rows and columns of every teacher tensor. This script builds, for each width in
`--widths`, the spec's student (its n_layers, heads and layer rule; FFN scaled with the width as the
teacher's ratio) from the spec's teacher exactly as a sweep's `init_only` row is, with no distillation,
then fine-tunes it on `--tasks` with the spec's GLUE settings and scores the validation split (the
reported numbers). No Ray. A width at which the undistilled student is at chance leaves distillation
everything to recover; a width at which it keeps the teacher's function is where the loss families can
be compared on what they add.

    python benchmarks/narrow_init.py sweeps/narrow.yaml --widths 192,240,288,384 --tasks sst2,qnli

Prints one line per width: hidden size, parameters, each task's validation score (x100, the mean of its
metrics: distil.evaluation.scores.task_score) per seed and
the fine-tuning seconds. The teacher's width builds the same-width student (the selected layers copied).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from distil import preflight  # noqa: E402
from distil.cli import prepare_teacher_and_corpus  # noqa: E402
from distil.config import rules  # noqa: E402
from distil.config.glue import glue_task  # noqa: E402
from distil.config.layers import parse_layer_key  # noqa: E402
from distil.config.settings import StudentShape  # noqa: E402
from distil.config.spec import SpecError, load_spec  # noqa: E402
from distil.evaluation import scores  # noqa: E402
from distil.evaluation.finetune import finetune_and_evaluate  # noqa: E402
from distil.science.student import save_student  # noqa: E402


def shape_at(width: int, heads: int, teacher: StudentShape) -> StudentShape:
    """The student shape of hidden size `width` with `heads` heads and the teacher's FFN ratio, checked by
    the sweep's own rule (distil.config.rules.resolve_shape, as weight selection needs); the teacher's
    own shape gives StudentShape() (the same-width copy).

    Raises:
        SpecError: `width` not divisible by `heads`, or wider than the teacher (resolve_shape's line,
            after "--widths <width>: ").
    """
    shape = StudentShape(width, heads, teacher.intermediate_size * width // teacher.hidden_size)
    try:
        shape = rules.resolve_shape(shape, teacher, from_teacher=True)
    except SpecError as e:
        raise SpecError(f"--widths {width}: {e}") from None
    return StudentShape() if shape == teacher else shape


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("spec")
    ap.add_argument("--widths", default="192,240,288,384", help="hidden sizes, comma-separated")
    ap.add_argument("--tasks", default="sst2,qnli", help="GLUE tasks, comma-separated")
    ap.add_argument("--seeds", type=int, default=1, help="fine-tuning seeds 0..N-1 per task (default 1)")
    ap.add_argument("--cache-dir", default=preflight.DEFAULT_CACHE_DIR)
    args = ap.parse_args(argv)
    try:
        spec = load_spec(args.spec)
        widths = [int(w) for w in args.widths.split(",")]
        teacher_shape = rules.teacher_shape(rules.teacher_config(rules.resolve_teacher(spec.teacher.model)))
        heads = spec.student.num_attention_heads if isinstance(spec.student.num_attention_heads, int) \
            else teacher_shape.num_attention_heads
        shapes = [shape_at(w, heads, teacher_shape) for w in widths]
        tasks = [glue_task(spec.glue.data, t) for t in args.tasks.split(",")]
    except (SpecError, ValueError) as e:
        sys.exit(f"error: {e}")
    _, teacher_dir, _, _ = prepare_teacher_and_corpus(spec, Path(args.cache_dir).expanduser())
    rule = spec.search.fixed().get("layer_selection") or "every_other"
    print(f"init_only-{rule}, {spec.student.n_layers} layers, no distillation; validation scores x100 "
          f"(train {spec.glue.max_train_examples}, eval {spec.glue.max_eval_examples}, lr {spec.glue.lr}, "
          f"{spec.glue.epochs} epochs)")
    for width, shape in zip(widths, shapes):
        with tempfile.TemporaryDirectory() as student:
            n = save_student(teacher_dir, spec.student.n_layers, parse_layer_key(rule), spec.seed, student, shape)
            cells, t0 = [], time.time()
            for task in tasks:
                runs = [finetune_and_evaluate(student, task, spec.glue.settings(task.name), s, None)
                        for s in range(args.seeds)]
                values = [scores.task_score(r) for r in runs]
                cells.append(f"{task.name} " + " / ".join(f"{v:.2f}" for v in values))
            print(f"hidden {width} ({shape.given() or 'the teacher shape'}): {n / 1e6:.1f} M body params; "
                  + "; ".join(cells) + f" ({time.time() - t0:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
