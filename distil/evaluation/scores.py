"""Scores of one row: a results file's fine-tuning runs turned into split, task and macro scores.

Conventions (as in the GLUE paper and DistilBERT's Table 1): every score is x100 on a validation
split; a split's score is the mean of its task's metrics (mrpc: F1 and accuracy; stsb: Pearson
and Spearman; a user's multi-label task: micro-F1, macro-F1 and ROC AUC), with several seeds the
mean over seeds; a task's score is the mean of its splits present (mnli: matched and
mismatched); macro_score is the mean over GLUE's tasks (WNLI only with include_wnli), tasks_macro
the same mean over the spec's own tasks. Pure functions of dicts and numpy arrays: the sweep
reads a trial's objectives with them (distil.search), the leaderboard its rows (distil.report).
"""

from __future__ import annotations

import math

import numpy as np

from distil.config.glue import TASKS, score_columns
from distil.config.objectives import PERPLEXITY
from distil.config.tasks import Task
from distil.evaluation.perplexity import ArticleNLL

# From result.json's "profile" (distil.evaluation.profile).
PROFILE_COLUMNS = ["size_mb", "latency_ms_b1", "latency_ms_b32"]
# Spread of the latency over timing rounds (min and max of the rounds' medians), when measured.
LATENCY_SPREAD_COLUMNS = ["latency_ms_b1_min", "latency_ms_b1_max", "latency_ms_b32_min", "latency_ms_b32_max"]
CONFIG_COLUMNS = ["alpha_ce", "alpha_mlm", "alpha_cos", "alpha_mse", "temperature", "layer_selection", "n_layers"]
CAUSAL_CONFIG_COLUMNS = ["alpha_clm"]  # a causal (gpt2) row's LM weight, in alpha_mlm's place; absent elsewhere
# The layer-wise loss terms' weights (distil.config.settings.LossWeights): a row's params carry them only when
# they are not 0, so they are columns only in a sweep that uses them (after alpha_mse on the leaderboard).
LAYER_TERM_COLUMNS = ["alpha_hidden", "alpha_attn", "alpha_relation"]
# The student's width beside its depth (n_layers): leaderboard column -> result.json params key. A row's params
# carry it only at another width than the teacher's; the leaderboard fills the teacher's in the others.
SHAPE_COLUMNS = {"hidden_size": "hidden_size", "heads": "num_attention_heads", "ffn": "intermediate_size"}
TASKS_MACRO = "tasks_macro"


def own_tasks(source) -> list[Task]:
    """The spec's own tasks (distil.config.tasks.Task) from a spec.json dict's "tasks" (a list of Task
    fields, as leaderboard.parquet's attrs hold them too), or an iterable of Task / dicts."""
    items = source.get("tasks") or [] if isinstance(source, dict) else source or []
    return [t if isinstance(t, Task) else Task(**t) for t in items]


def all_columns(tasks=()) -> list[str]:
    """Every split score column: GLUE's in GLUE order, then those of the spec's own `tasks`."""
    return [*score_columns(), *(c for t in tasks for c in t.columns())]


def split_scores(glue_runs: list[dict]) -> dict[str, list[float]]:
    """{column (task + split suffix): [score of each seed]} from finetune_and_evaluate results."""
    out: dict[str, list[float]] = {}
    for run in sorted(glue_runs, key=lambda r: r["seed"]):
        for suffix, metrics in run["scores"].items():
            if metrics:
                out.setdefault(run["task"] + suffix, []).append(float(np.mean(list(metrics.values()))))
    return out


def macro_over(columns: dict, tasks):
    """Mean over `tasks` (Task rows) of the mean of each task's present split columns; NaN if
    nothing is scored.

    Values are floats (one row) or equal-shaped arrays, e.g. (B,) bootstrap resamples
    (distil.evaluation.confidence), so the intervals use this very convention. A column is absent when it
    is missing or NaN."""
    task_scores = []
    for task in tasks:
        present = [np.asarray(columns[c], dtype=float) for c in task.columns()
                   if c in columns and not np.isnan(np.asarray(columns[c], dtype=float)).all()]
        if present:
            task_scores.append(np.mean(present, axis=0))
    if not task_scores:
        return math.nan
    macro = np.mean(task_scores, axis=0)
    return float(macro) if macro.ndim == 0 else macro


def task_score(run: dict) -> float:
    """One fine-tuning run's task score (GLUE's or an own task's): the mean over its splits with
    scores of the mean of each split's metrics (mnli: (m + mm) / 2); NaN if none scored. The
    early-stopping proxy averages these (distil.search.finetune_runs.proxy_point)."""
    columns = split_scores([run])
    return float(np.mean([v[0] for v in columns.values()])) if columns else math.nan


def selection_score(run: dict) -> float:
    """One fine-tuning run's score on its held-out selection slice of the train split (the mean of
    its metrics); NaN without one (a run written before the slice existed, or an empty slice)."""
    metrics = run.get("selection")
    return float(np.mean(list(metrics.values()))) if metrics else math.nan


def selection_row(result: dict, include_wnli: bool = True, tasks=()) -> dict:
    """The scores the search ranks a result by: row_from_result's split columns, task macro and
    macro_score computed from each run's held-out selection slice instead of the validation splits
    (every split column of a task holds the task's selection score, mean over seeds), so the
    selection never reads a row the leaderboard reports (issue 21, point 2); with an LM evaluation,
    `perplexity` on the distillation corpus' held-out eval split (result "lm"["selection"]) instead of
    WikiText's test split."""
    tasks = own_tasks(tasks)
    per_task: dict[str, list[float]] = {}
    for run in result.get("glue", []):
        if not math.isnan(score := selection_score(run)):
            per_task.setdefault(run["task"], []).append(score)
    row = {c: math.nan for c in all_columns(tasks)}
    for task in [*TASKS.values(), *tasks]:
        if task.name in per_task:
            row.update({c: float(np.mean(per_task[task.name])) for c in task.columns()})
    if (result.get("lm") or {}).get("selection"):
        row[PERPLEXITY] = float(result["lm"]["selection"]["perplexity"])
    return _with_macros(row, result, include_wnli, tasks)


def _with_macros(row: dict, result: dict, include_wnli: bool, tasks: list[Task]) -> dict:
    """`row` with macro_score (and tasks_macro with own `tasks`) over its split columns. A
    task-specific distillation row scores only its own task(s): a macro over them would not be
    comparable with the others', so it has none (compare its task column instead)."""
    kd = result.get("kind") == "task_distill"
    row["macro_score"] = math.nan if kd else macro_score(row, include_wnli)
    if tasks:
        row[TASKS_MACRO] = math.nan if kd else macro_over(row, tasks)
    return row


def macro_score(columns: dict, include_wnli: bool = True):
    """The GLUE macro (macro_over GLUE's tasks; WNLI only with include_wnli)."""
    return macro_over(columns, [t for t in TASKS.values() if include_wnli or t.name != "wnli"])


def row_from_result(result: dict, include_wnli: bool = True, tasks=()) -> dict:
    """One leaderboard row (dict) from a teacher/candidate result.json.

    A row with an LM evaluation (result "lm": distil.evaluation.perplexity.score_saved_model) gets
    `perplexity` (ArticleNLL.perplexity: exp of the summed NLL over the summed scored tokens) and, when
    positive, `alpha_clm`.

    tasks: the spec's own tasks (Task rows or their dicts): their split columns, tasks_macro and
    finetune_seconds_<task> (seconds of one fine-tuning run of that task, mean over its seeds)
    are added. The sweep reads a trial's objectives from this row (distil.search.trial)."""
    tasks = own_tasks(tasks)
    runs = result.get("glue", [])
    per_seed = split_scores(runs)
    row = {c: (float(np.mean(per_seed[c])) if c in per_seed else math.nan) for c in all_columns(tasks)}
    for c, values in per_seed.items():
        if len(values) > 1:
            row[c + "_std"] = float(np.std(values, ddof=1))
    _with_macros(row, result, include_wnli, tasks)
    row["seeds"] = ",".join(sorted({str(r["seed"]) for r in runs}))
    subsets = sorted({f"{r['task']}:{s}" for r in runs for s in r.get("subset_splits", [])})
    row["subset_data"] = " ".join(subsets)
    row["n_params"] = result.get("n_params")
    params = result.get("params", {})
    row.update({k: params.get(k) for k in CONFIG_COLUMNS if k in params})
    row.update({k: params[k] for k in CAUSAL_CONFIG_COLUMNS if params.get(k)})
    row.update({c: params[k] for c, k in SHAPE_COLUMNS.items() if k in params})
    row.update({k: params[k] for k in LAYER_TERM_COLUMNS if k in params})
    if result.get("lm"):  # with lm_eval: the WikiText perplexity (its interval needs the other rows: leaderboard)
        row[PERPLEXITY] = ArticleNLL.from_json(result["lm"]).perplexity
    if "distill" in result:
        row["distill_loss"] = result["distill"].get("loss")
    # Results written before profiling existed have none of these: they stay empty.
    row.update({k: result.get("profile", {}).get(k, math.nan) for k in PROFILE_COLUMNS + LATENCY_SPREAD_COLUMNS})
    row["finetune_seconds"] = result.get("finetune_seconds", math.nan)
    for t in tasks:
        seconds = [r["seconds"] for r in runs if r["task"] == t.name and r.get("seconds") is not None]
        row[f"finetune_seconds_{t.name}"] = float(np.mean(seconds)) if seconds else math.nan
    return row
