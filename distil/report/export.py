"""Export the sweep's winner: the best finished student as a Hugging Face dir with a model card.

`export_best(board, results_dir)` copies `candidates/<id>/student/` (saved by `save_pretrained`
with its tokenizer) to `results_dir/best_student/` and writes README.md there: the distillation
settings, its scores (GLUE's and the user's own tasks') beside the teacher's, % of the teacher,
and the teacher-vs-student comparison on each user task. The dir loads offline with
`AutoModelForMaskedLM` (the distilled MLM) and `AutoModelForSequenceClassification` (for
fine-tuning; the classifier head is new).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd

from distil.config.objectives import PERPLEXITY
from distil.evaluation.scores import CAUSAL_CONFIG_COLUMNS, CONFIG_COLUMNS, PROFILE_COLUMNS, TASKS_MACRO
from distil.report import summary
from distil.report.board import FAMILIES, Board, families
from distil.store.records import ResultsDir


def _num(v, digits: int = 2) -> str:
    return "" if pd.isna(v) else f"{v:.{digits}f}"


MASKED_USE = """from transformers import AutoModelForMaskedLM, AutoModelForSequenceClassification, AutoTokenizer
tokenizer = AutoTokenizer.from_pretrained("best_student")
mlm = AutoModelForMaskedLM.from_pretrained("best_student")               # the distilled model
clf = AutoModelForSequenceClassification.from_pretrained("best_student", num_labels=2)  # new head, to fine-tune"""
CAUSAL_USE = """from transformers import AutoModelForCausalLM, AutoTokenizer
tokenizer = AutoTokenizer.from_pretrained("best_student")   # pad token: <|endoftext|>, so batches pad
lm = AutoModelForCausalLM.from_pretrained("best_student")   # the distilled model"""


def model_card(board: Board, sweep: str, teacher_source: str) -> str:
    """README.md (markdown) for the board's best student (Board.best_student, which must exist):
    its settings, its scores beside the teacher's (if the board has a teacher row), the notes of
    the leaderboard over those two rows, its comparison on each user task, its cost."""
    best, teacher = board.best_student(), board.teacher()
    config = "\n".join(f"| {k} | {best[k]} |" for k in [*CONFIG_COLUMNS, *CAUSAL_CONFIG_COLUMNS]
                       if k in best and pd.notna(best[k]))
    rank = board.rank_by
    shown = [c for c in board.columns if c not in summary.hidden_empty_columns(board.only([best["model"]]))]
    macros = [m for m in families(board.tasks) if m in best and pd.notna(best.get(m))] or ["macro_score"]
    rows = []
    for col in [*shown, *macros]:
        s, t = best.get(col), teacher.get(col) if teacher is not None else None
        # % of teacher only where the teacher scored above 0 (cola MCC can be 0 or negative).
        pct = _num(100 * s / t, 1) if pd.notna(s) and t is not None and pd.notna(t) and t > 0 else ""
        name = f"**{col}**" if col in FAMILIES else col
        rows.append(f"| {name} | {_num(s)} | {_num(t) if t is not None else ''} | {pct} |")
    cost = [f"- {k}: {_num(best[k])}" for k in (*PROFILE_COLUMNS, "finetune_seconds") if pd.notna(best.get(k))]
    sfx = "_tasks" if rank == TASKS_MACRO else ""
    interval = summary.interval_text(best, f"pct_teacher{sfx}", 1) if rank in FAMILIES else ""
    g = best.get(f"gain_over_random_init{sfx}")
    gain = (f", {g:+.2f}{summary.interval_text(best, f'gain_over_random_init{sfx}')} points over the same "
            "architecture with random weights (random_init)") if pd.notna(g) else ""
    pct = best.get(f"pct_teacher{sfx}") if rank in FAMILIES else (
        100 * best[rank] / teacher[rank] if teacher is not None and pd.notna(teacher.get(rank)) and teacher[rank] > 0
        else None)
    quality = f"{_num(best[rank])}, {_num(pct, 1)} % of the teacher's{interval}{gain}"
    use, style, scores = MASKED_USE, "DistilBERT", "Validation scores (×100)"
    if rank == PERPLEXITY:  # a causal student: lower is better, its ratio to the teacher's
        quality = (f"{_num(best[rank])}{summary.interval_text(best, rank)} (lower is better), "
                   f"{summary._ratio(best, 'ppl_vs_teacher') or '?'} the teacher's perplexity")
        use, style, scores = CAUSAL_USE, "DistilGPT2", "Perplexity (WikiText test) and the other columns"
    picked = (f"its selection score ({_num(best['selection_score'])} {rank} on held-out training rows, "
              f"which the search ranked on); on the validation rows, {rank}" if pd.notna(best.get("selection_score"))
              else rank)
    shown_rows = board.only([best["model"]] + ([teacher["model"]] if teacher is not None else []))
    notes = "\n".join(f"- {n}" for n in summary.conventions(shown_rows))
    compared = [c for c in summary.comparison_sentences(board) if f"`{best['model']}`" in c]  # where it is the best
    compared = ("\n## On each user task, against the teacher\n\n" + "\n".join(f"- {c}" for c in compared)
                + f"\n\n{summary.comparison_note(board)}\n") if compared else ""
    return f"""---
library_name: transformers
tags: [distillation, distilbert]
---

# Distilled student `{best['model']}` (sweep `{sweep}`)

A {style}-style student ({_num(best['n_params'] / 1e6, 1)}M encoder parameters) distilled by
distil-sweep from the teacher `{teacher_source}`. It is the best of the sweep's finished students
by {picked}: {quality}.

```python
{use}
```

## Distillation settings

| setting | value |
|---|---|
{config}

## {scores}

| column | this student | teacher | % of teacher |
|---|---|---|---|
{chr(10).join(rows)}

{notes}
{compared}
## Cost

{chr(10).join(cost) if cost else "No profile in this student's result.json (written before profiling existed)."}
"""


def export_best(board: Board, results_dir: str | Path) -> Path:
    """Copy the best done student (Board.best_student: by its selection score) to `results_dir/best_student/` with a
    model card (README.md); returns that dir.

    The copy and its card are written to `.best_student.new/` first and swapped in only when
    complete, so a failed export leaves the previous `best_student/` as it was.

    Raises:
        ValueError: no student has finished.
        FileNotFoundError: the best student's `candidates/<id>/student/` is missing.
    """
    results = ResultsDir(results_dir)
    best = board.best_student()
    if best is None:
        raise ValueError(f"export: no finished student in {results.path}")
    source = results.candidate(str(best["model"])).student_dir
    if not source.is_dir():
        raise FileNotFoundError(f"export: {source} is missing; best_student/ was left as it was")
    teacher_dir = results.teacher()
    teacher_source = teacher_dir.read_result().params.get("model", "?") if teacher_dir.has_result() else "?"
    out = results.best_student_dir
    new, old = (results.path / name for name in (".best_student.new", ".best_student.old"))
    shutil.rmtree(new, ignore_errors=True)  # a half-written copy from an interrupted export
    try:
        shutil.copytree(source, new)
        (new / "README.md").write_text(model_card(board, results.sweep_name(), teacher_source))
    except BaseException:
        shutil.rmtree(new, ignore_errors=True)
        raise
    # The best may change when an interrupted sweep is resumed: swap the new export in.
    shutil.rmtree(old, ignore_errors=True)
    if out.exists():
        out.rename(old)
    new.rename(out)
    shutil.rmtree(old, ignore_errors=True)
    return out
