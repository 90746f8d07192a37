"""Leaderboard: one row per candidate student plus the teacher, rebuilt from result files.

Conventions (as in the GLUE paper and DistilBERT's Table 1):
  * every score is ×100 on a validation split;
  * a split's score is the mean of its task's metrics (mrpc: F1 and accuracy; stsb: Pearson and
    Spearman; qqp: accuracy and F1); with several seeds, the mean over seeds (and `<col>_std`);
  * a task's score is the mean of its splits present (mnli: matched and mismatched);
  * macro_score is the mean of task scores over the tasks scored (9 with WNLI; `include_wnli:
    false` drops it). A column with no data (mnli_mm offline) stays empty and is not counted.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from distil.glue import TASKS, score_columns

PROFILE_COLUMNS = ["size_mb", "latency_ms_b1", "latency_ms_b32"]  # from result.json's "profile" (distil.profile)
CONFIG_COLUMNS = ["alpha_ce", "alpha_mlm", "alpha_cos", "alpha_mse", "temperature", "layer_selection"]


def split_scores(glue_runs: list[dict]) -> dict[str, list[float]]:
    """{column (task + split suffix): [score of each seed]} from finetune_and_evaluate results."""
    out: dict[str, list[float]] = {}
    for run in sorted(glue_runs, key=lambda r: r["seed"]):
        for suffix, metrics in run["scores"].items():
            if metrics:
                out.setdefault(run["task"] + suffix, []).append(float(np.mean(list(metrics.values()))))
    return out


def macro_score(columns: dict[str, float], include_wnli: bool = True) -> float:
    """Mean over tasks of the mean of each task's present split columns; NaN if nothing is scored."""
    task_scores = []
    for task in TASKS.values():
        if task.name == "wnli" and not include_wnli:
            continue
        present = [columns[task.name + s] for s in task.eval_splits if not math.isnan(columns.get(task.name + s, math.nan))]
        if present:
            task_scores.append(float(np.mean(present)))
    return float(np.mean(task_scores)) if task_scores else math.nan


def row_from_result(result: dict, include_wnli: bool = True) -> dict:
    """One leaderboard row (dict) from a teacher/candidate result.json."""
    per_seed = split_scores(result.get("glue", []))
    row = {c: (float(np.mean(per_seed[c])) if c in per_seed else math.nan) for c in score_columns()}
    for c, values in per_seed.items():
        if len(values) > 1:
            row[c + "_std"] = float(np.std(values, ddof=1))
    # A task-specific distillation row scores only its own task(s): a macro over them would not
    # be comparable with the others', so it has none (compare its task column instead).
    row["macro_score"] = math.nan if result.get("kind") == "task_distill" else macro_score(row, include_wnli)
    row["seeds"] = ",".join(sorted({str(r["seed"]) for r in result.get("glue", [])}))
    subsets = sorted({f"{r['task']}:{s}" for r in result.get("glue", []) for s in r.get("subset_splits", [])})
    row["subset_data"] = " ".join(subsets)
    row["n_params"] = result.get("n_params")
    row.update({k: result.get("params", {}).get(k) for k in CONFIG_COLUMNS if k in result.get("params", {})})
    if "distill" in result:
        row["distill_loss"] = result["distill"].get("loss")
    # Results written before profiling existed have none of these: they stay empty.
    row.update({k: result.get("profile", {}).get(k, math.nan) for k in PROFILE_COLUMNS})
    row["finetune_seconds"] = result.get("finetune_seconds", math.nan)
    return row


def load(results_dir: str | Path) -> pd.DataFrame:
    """Leaderboard of a sweep's results dir (finished or interrupted), sorted by macro_score.

    Rows: `teacher`, one per candidate (the Tune trial id), and the reference rows `random_init`
    (the students' architecture with random weights, not distilled) and `task-kd-<task>`
    (task-specific distillation, scored on its task only: no macro_score).

    Columns: model, kind (teacher/student/reference/task_distill), status (done/incomplete),
    alpha_ce, alpha_mlm, alpha_cos, alpha_mse, temperature, layer_selection, macro_score,
    pct_teacher (macro as % of the teacher's), gain_over_random_init (macro minus the random_init
    row's, points), one column per GLUE split (cola ... wnli, mnli_m and mnli_mm), <col>_std with
    several seeds, n_params (encoder parameters), size_mb (weight files on disk, MB = 1e6 bytes),
    latency_ms_b1 / latency_ms_b32 (CPU forward pass at 128 tokens, milliseconds per example at
    batch 1 / 32; see distil.profile), distill_loss, finetune_seconds (GLUE fine-tuning +
    evaluation, seconds summed over tasks and seeds), trial_index (0, 1, ... in order of trial
    start, from config.json's `started`; empty for the teacher), seeds, subset_data (splits only
    available as subsets). Columns a result file lacks (e.g. profiles of an older sweep) are empty.
    """
    results_dir = Path(results_dir)
    spec_file = results_dir / "spec.json"
    include_wnli = json.loads(spec_file.read_text())["glue"]["include_wnli"] if spec_file.exists() else True
    rows = []
    for path in [results_dir / "teacher" / "result.json", *sorted(results_dir.glob("references/*/result.json"))]:
        if path.exists():
            result = json.loads(path.read_text())
            rows.append({"model": path.parent.name, "kind": result.get("kind", "teacher"), "status": "done",
                         **row_from_result(result, include_wnli)})
    started = {}
    for cand in sorted((results_dir / "candidates").glob("*")):
        if (cand / "config.json").exists():
            started[cand.name] = json.loads((cand / "config.json").read_text()).get("started", math.nan)
        if (cand / "result.json").exists():
            rows.append({"model": cand.name, "kind": "student", "status": "done",
                         **row_from_result(json.loads((cand / "result.json").read_text()), include_wnli)})
        elif (cand / "config.json").exists():
            params = json.loads((cand / "config.json").read_text())["params"]
            rows.append({"model": cand.name, "kind": "student", "status": "incomplete",
                         **{k: params.get(k) for k in CONFIG_COLUMNS}})
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    for c in _order():  # keep every column, e.g. an empty mnli_mm offline
        if c not in df.columns:
            df[c] = math.nan
    order = pd.Series(started, dtype=float).rank(method="first") - 1  # 0 = the first trial started
    df["trial_index"] = df["model"].map(order).astype("Int64")
    df = df[_order() + [c for c in df.columns if c not in _order()]]
    teacher_macro = df.loc[df["kind"] == "teacher", "macro_score"]
    if len(teacher_macro):
        df["pct_teacher"] = 100 * df["macro_score"] / teacher_macro.iloc[0]
    random_macro = df.loc[df["model"] == "random_init", "macro_score"]
    if len(random_macro):
        df["gain_over_random_init"] = df["macro_score"] - random_macro.iloc[0]
    return df.sort_values("macro_score", ascending=False, na_position="last").reset_index(drop=True)


def _order() -> list[str]:
    return ["model", "kind", "status", *CONFIG_COLUMNS, "macro_score", "pct_teacher", "gain_over_random_init", *score_columns(), "n_params", *PROFILE_COLUMNS,
            "distill_loss", "finetune_seconds", "trial_index"]


def write(df: pd.DataFrame, results_dir: str | Path) -> None:
    """Write leaderboard.csv and leaderboard.parquet (full precision) and leaderboard.md (rounded,
    with the conventions)."""
    results_dir = Path(results_dir)
    df.to_csv(results_dir / "leaderboard.csv", index=False)
    df.to_parquet(results_dir / "leaderboard.parquet", index=False)
    (results_dir / "leaderboard.md").write_text(to_markdown(df))


def conventions(df: pd.DataFrame) -> list[str]:
    """The notes printed under the leaderboard (markdown, html report): how to read its numbers."""
    subsets = sorted({s for v in df.get("subset_data", pd.Series(dtype=str)).dropna() for s in str(v).split()})
    profiled = any(c in df and df[c].notna().any() for c in PROFILE_COLUMNS)
    notes = [
        "Scores ×100 on GLUE validation splits; macro_score = mean of task scores (mnli = mean of its splits present).",
        "random_init: the students' architecture with random weights, no distillation; gain_over_random_init = "
        "macro_score minus its macro_score (points)." if (df["model"] == "random_init").any() else "",
        "task-kd-<task>: task-specific distillation, scored on that task only (no macro_score)."
        if (df["kind"] == "task_distill").any() else "",
        f"Seeds: {', '.join(sorted(set(df['seeds'].dropna())))}; a score with a matching _std column is the mean "
        "over seeds (sample std in that column), the others come from the first seed." if "seeds" in df else "",
        f"Only available as subsets (task:split): {', '.join(subsets)}." if subsets else "",
        "size_mb: weight files on disk (1e6 bytes); latency_ms_b1/_b32: CPU forward pass of 128 tokens, "
        "1 torch thread, milliseconds per example at batch 1/32." if profiled else "",
        "Empty cells: no data for that split (e.g. mnli_mm offline), the trial did not finish, "
        "or the result predates that column.",
    ]
    return [n for n in notes if n]


def formatted(df: pd.DataFrame) -> pd.DataFrame:
    """The leaderboard as display strings (2 decimals, n_params in millions, empty for missing),
    without the long `seeds` and `subset_data` columns (summarised by `conventions`)."""
    def cell(v, column):
        if pd.isna(v):
            return ""
        if column == "n_params":
            return f"{v / 1e6:.1f}M"
        return f"{v:.2f}" if isinstance(v, float) else str(v)

    shown = df.drop(columns=[c for c in ("subset_data", "seeds") if c in df.columns])
    return pd.DataFrame({c: [cell(v, c) for v in shown[c]] for c in shown.columns})


def to_markdown(df: pd.DataFrame) -> str:
    """The leaderboard as a markdown table followed by its conventions as a bullet list."""
    table = formatted(df).to_markdown(index=False, disable_numparse=True)
    return table + "\n\n" + "\n".join(f"- {n}" for n in conventions(df)) + "\n"
