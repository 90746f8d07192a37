"""Export the sweep's winner: the best finished student as a Hugging Face dir with a model card.

`export_best(df, results_dir)` copies `candidates/<id>/student/` (saved by `save_pretrained`
with its tokenizer) to `results_dir/best_student/` and writes README.md there: the distillation
settings, its scores (GLUE's and the user's own tasks') beside the teacher's, % of the teacher,
and the teacher-vs-student comparison on each user task. The dir loads offline with
`AutoModelForMaskedLM` (the distilled MLM) and `AutoModelForSequenceClassification` (for
fine-tuning; the classifier head is new).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd

from distil.report import leaderboard
from distil.report import summary


best_student = leaderboard.best_student  # the done student best by the ranking metric (df.attrs["rank_by"]), or None


def _num(v, digits: int = 2) -> str:
    return "" if pd.isna(v) else f"{v:.{digits}f}"


def model_card(best: pd.Series, teacher: pd.Series | None, sweep: str, teacher_source: str, attrs: dict | None = None) -> str:
    """README.md (markdown) for the exported student; `teacher` is the teacher's row, if any;
    `attrs`: the leaderboard's df.attrs (bootstrap, chance, provenance notes), if any."""
    config = "\n".join(f"| {k} | {best[k]} |" for k in leaderboard.CONFIG_COLUMNS if k in best and pd.notna(best[k]))
    attrs = attrs or {}
    rank = attrs.get("rank_by", "macro_score")
    frame = pd.DataFrame([best])
    frame.attrs.update(attrs)
    shown = [c for c in leaderboard.all_columns(leaderboard.own_tasks(attrs)) if c not in summary.hidden_empty_columns(frame)]
    macros = [m for m in leaderboard.families(leaderboard.own_tasks(attrs)) if m in best and pd.notna(best.get(m))] or ["macro_score"]
    rows = []
    for col in [*shown, *macros]:
        s, t = best.get(col), teacher.get(col) if teacher is not None else None
        # % of teacher only where the teacher scored above 0 (cola MCC can be 0 or negative).
        pct = _num(100 * s / t, 1) if pd.notna(s) and t is not None and pd.notna(t) and t > 0 else ""
        name = f"**{col}**" if col in leaderboard.FAMILIES else col
        rows.append(f"| {name} | {_num(s)} | {_num(t) if t is not None else ''} | {pct} |")
    cost = [f"- {k}: {_num(best[k])}" for k in (*leaderboard.PROFILE_COLUMNS, "finetune_seconds") if pd.notna(best.get(k))]
    sfx = "_tasks" if rank == leaderboard.TASKS_MACRO else ""
    g = best.get(f"gain_over_random_init{sfx}")
    gain = (f", {g:+.2f}{summary.interval_text(best, f'gain_over_random_init{sfx}')} points over the same architecture with "
            "random weights (random_init)") if pd.notna(g) else ""
    pct = best.get(f"pct_teacher{sfx}") if rank in leaderboard.FAMILIES else (
        100 * best[rank] / teacher[rank] if teacher is not None and pd.notna(teacher.get(rank)) and teacher[rank] > 0 else None)
    rows_df = pd.DataFrame([best] + ([teacher] if teacher is not None else []))
    rows_df.attrs.update(attrs)
    notes = "\n".join(f"- {n}" for n in summary.conventions(rows_df))
    compared = [c for c in summary.comparison_sentences(rows_df) if f"`{best['model']}`" in c]  # where it is the best
    compared = ("\n## On each user task, against the teacher\n\n" + "\n".join(f"- {c}" for c in compared)
                + f"\n\n{summary.COMPARISON_NOTE}\n") if compared else ""
    return f"""---
library_name: transformers
tags: [distillation, distilbert]
---

# Distilled student `{best['model']}` (sweep `{sweep}`)

A DistilBERT-style student ({_num(best['n_params'] / 1e6, 1)}M encoder parameters) distilled by
distil-sweep from the teacher `{teacher_source}`. It is the best of the sweep's finished students
by {rank}: {_num(best[rank])}, {_num(pct, 1)} % of the teacher's{summary.interval_text(best, f'pct_teacher{sfx}', 1) if rank in leaderboard.FAMILIES else ''}{gain}.

```python
from transformers import AutoModelForMaskedLM, AutoModelForSequenceClassification, AutoTokenizer
tokenizer = AutoTokenizer.from_pretrained("best_student")
mlm = AutoModelForMaskedLM.from_pretrained("best_student")               # the distilled model
clf = AutoModelForSequenceClassification.from_pretrained("best_student", num_labels=2)  # new head, to fine-tune
```

## Distillation settings

| setting | value |
|---|---|
{config}

## Validation scores (×100)

| column | this student | teacher | % of teacher |
|---|---|---|---|
{chr(10).join(rows)}

{notes}
{compared}
## Cost

{chr(10).join(cost) if cost else "No profile in this student's result.json (written before profiling existed)."}
"""


def export_best(df: pd.DataFrame, results_dir: str | Path) -> Path:
    """Copy the best done student (by df.attrs["rank_by"]) to `results_dir/best_student/` with a
    model card (README.md); returns that dir.

    The copy and its card are written to `.best_student.new/` first and swapped in only when
    complete, so a failed export leaves the previous `best_student/` as it was.

    Raises:
        ValueError: no student has finished.
        FileNotFoundError: the best student's `candidates/<id>/student/` is missing.
    """
    results_dir = Path(results_dir)
    best = best_student(df)
    if best is None:
        raise ValueError(f"export: no finished student in {results_dir}")
    source = results_dir / "candidates" / str(best["model"]) / "student"
    if not source.is_dir():
        raise FileNotFoundError(f"export: {source} is missing; best_student/ was left as it was")
    teacher_rows = df[df["kind"] == "teacher"]
    teacher = teacher_rows.iloc[0] if len(teacher_rows) else None
    teacher_file = results_dir / "teacher" / "result.json"
    teacher_source = json.loads(teacher_file.read_text())["params"].get("model", "?") if teacher_file.exists() else "?"
    spec_file = results_dir / "spec.json"
    sweep = json.loads(spec_file.read_text())["name"] if spec_file.exists() else results_dir.resolve().name
    out, new, old = (results_dir / name for name in ("best_student", ".best_student.new", ".best_student.old"))
    shutil.rmtree(new, ignore_errors=True)  # a half-written copy from an interrupted export
    try:
        shutil.copytree(source, new)
        (new / "README.md").write_text(model_card(best, teacher, sweep, teacher_source, df.attrs))
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
