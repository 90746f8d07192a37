"""Export the sweep's winner: the best finished student as a Hugging Face dir with a model card.

`export_best(df, results_dir)` copies `candidates/<id>/student/` (saved by `save_pretrained`
with its tokenizer) to `results_dir/best_student/` and writes README.md there: the distillation
settings, its GLUE scores beside the teacher's, and % of the teacher. The dir loads offline with
`AutoModelForMaskedLM` (the distilled MLM) and `AutoModelForSequenceClassification` (for
fine-tuning; the classifier head is new).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd

from distil import leaderboard
from distil.glue import score_columns


best_student = leaderboard.best_student  # the done student with the highest macro_score, or None


def _num(v, digits: int = 2) -> str:
    return "" if pd.isna(v) else f"{v:.{digits}f}"


def model_card(best: pd.Series, teacher: pd.Series | None, sweep: str, teacher_source: str, attrs: dict | None = None) -> str:
    """README.md (markdown) for the exported student; `teacher` is the teacher's row, if any;
    `attrs`: the leaderboard's df.attrs (bootstrap, chance, provenance notes), if any."""
    config = "\n".join(f"| {k} | {best[k]} |" for k in leaderboard.CONFIG_COLUMNS if k in best and pd.notna(best[k]))
    rows = []
    for col in [*score_columns(), "macro_score"]:
        s, t = best.get(col), teacher.get(col) if teacher is not None else None
        # % of teacher only where the teacher scored above 0 (cola MCC can be 0 or negative).
        pct = _num(100 * s / t, 1) if pd.notna(s) and t is not None and pd.notna(t) and t > 0 else ""
        name = f"**{col}**" if col == "macro_score" else col
        rows.append(f"| {name} | {_num(s)} | {_num(t) if t is not None else ''} | {pct} |")
    cost = [f"- {k}: {_num(best[k])}" for k in (*leaderboard.PROFILE_COLUMNS, "finetune_seconds") if pd.notna(best.get(k))]
    g = best.get("gain_over_random_init")
    gain = (f", {g:+.2f}{leaderboard.interval_text(best, 'gain_over_random_init')} points over the same architecture with random "
            "weights (random_init)") if pd.notna(g) else ""
    rows_df = pd.DataFrame([best] + ([teacher] if teacher is not None else []))
    rows_df.attrs.update(attrs or {})
    notes = "\n".join(f"- {n}" for n in leaderboard.conventions(rows_df))
    return f"""---
library_name: transformers
tags: [distillation, distilbert, glue]
---

# Distilled student `{best['model']}` (sweep `{sweep}`)

A DistilBERT-style student ({_num(best['n_params'] / 1e6, 1)}M encoder parameters) distilled by
distil-sweep from the teacher `{teacher_source}`. It is the best of the sweep's finished students
by GLUE macro_score: {_num(best['macro_score'])}, {_num(best.get('pct_teacher'), 1)} % of the teacher's{leaderboard.interval_text(best, 'pct_teacher', 1)}{gain}.

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

## GLUE validation scores (×100)

| column | this student | teacher | % of teacher |
|---|---|---|---|
{chr(10).join(rows)}

{notes}

## Cost

{chr(10).join(cost) if cost else "No profile in this student's result.json (written before profiling existed)."}
"""


def export_best(df: pd.DataFrame, results_dir: str | Path) -> Path:
    """Copy the best done student (highest macro_score) to `results_dir/best_student/` with a
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
