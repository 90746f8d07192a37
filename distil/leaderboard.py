"""Leaderboard: one row per candidate student plus the teacher, rebuilt from result files.

Conventions (as in the GLUE paper and DistilBERT's Table 1):
  * every score is ×100 on a validation split;
  * a split's score is the mean of its task's metrics (mrpc: F1 and accuracy; stsb: Pearson and
    Spearman; qqp: accuracy and F1; a user's multi-label task: micro-F1, macro-F1 and ROC AUC);
    with several seeds, the mean over seeds (and `<col>_std`);
  * a task's score is the mean of its splits present (mnli: matched and mismatched);
  * macro_score is the mean of GLUE task scores over the GLUE tasks scored (9 with WNLI;
    `include_wnli: false` drops it), comparable with DistilBERT's table; tasks_macro is the same
    mean over the spec's own tasks (`tasks:`). A column with no data (mnli_mm offline) stays
    empty and is not counted.

Rows are ranked by the spec's first `search.objectives` (macro_score, tasks_macro or one score
column). How sure the order is comes from distil.confidence: paired bootstrap intervals of
pct_teacher, the gains over the reference rows and the difference to the paper-default candidate
(on macro_score, and with a `_tasks` suffix on tasks_macro), p_best, and each split's chance
(majority-class) score, all from the saved validation predictions. `headline(df)` says it in a
few lines; `to_markdown(df)` puts it on top of the table, with the teacher-vs-best-student
comparison on each user task (`comparison_table`).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd

from distil import confidence
from distil.glue import TASKS, score_columns
from distil.tasks import MULTI, Task

PROFILE_COLUMNS = ["size_mb", "latency_ms_b1", "latency_ms_b32"]  # from result.json's "profile" (distil.profile)
# Spread of the latency over timing rounds (min and max of the rounds' medians), when measured.
LATENCY_SPREAD_COLUMNS = ["latency_ms_b1_min", "latency_ms_b1_max", "latency_ms_b32_min", "latency_ms_b32_max"]
CONFIG_COLUMNS = ["alpha_ce", "alpha_mlm", "alpha_cos", "alpha_mse", "temperature", "layer_selection", "n_layers"]
TASKS_MACRO = "tasks_macro"
# The two macros and the suffix of the columns derived from each (pct_teacher, gain_over_<ref>,
# gain_over_init, delta_vs_default): pct_teacher is on macro_score, pct_teacher_tasks on tasks_macro.
FAMILIES = {"macro_score": "", TASKS_MACRO: "_tasks"}


def own_tasks(source) -> list[Task]:
    """The spec's own tasks (distil.tasks.Task) from a spec.json dict's "tasks" or df.attrs["tasks"]
    (lists of Task fields), or an iterable of Task / dicts."""
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
    (distil.confidence), so the intervals use this very convention. A column is absent when it
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
    early-stopping proxy averages these (distil.sweep)."""
    columns = split_scores([run])
    return float(np.mean([v[0] for v in columns.values()])) if columns else math.nan


def macro_score(columns: dict, include_wnli: bool = True):
    """The GLUE macro (macro_over GLUE's tasks; WNLI only with include_wnli)."""
    return macro_over(columns, [t for t in TASKS.values() if include_wnli or t.name != "wnli"])


def row_from_result(result: dict, include_wnli: bool = True, tasks=()) -> dict:
    """One leaderboard row (dict) from a teacher/candidate result.json.

    tasks: the spec's own tasks (Task rows or their dicts): their split columns, tasks_macro and
    finetune_seconds_<task> (seconds of one fine-tuning run of that task, mean over its seeds)
    are added. The sweep reads a trial's objectives from this row (distil.sweep)."""
    tasks = own_tasks(tasks)
    runs = result.get("glue", [])
    per_seed = split_scores(runs)
    row = {c: (float(np.mean(per_seed[c])) if c in per_seed else math.nan) for c in all_columns(tasks)}
    for c, values in per_seed.items():
        if len(values) > 1:
            row[c + "_std"] = float(np.std(values, ddof=1))
    # A task-specific distillation row scores only its own task(s): a macro over them would not
    # be comparable with the others', so it has none (compare its task column instead).
    kd = result.get("kind") == "task_distill"
    row["macro_score"] = math.nan if kd else macro_score(row, include_wnli)
    if tasks:
        row[TASKS_MACRO] = math.nan if kd else macro_over(row, tasks)
    row["seeds"] = ",".join(sorted({str(r["seed"]) for r in runs}))
    subsets = sorted({f"{r['task']}:{s}" for r in runs for s in r.get("subset_splits", [])})
    row["subset_data"] = " ".join(subsets)
    row["n_params"] = result.get("n_params")
    row.update({k: result.get("params", {}).get(k) for k in CONFIG_COLUMNS if k in result.get("params", {})})
    if "distill" in result:
        row["distill_loss"] = result["distill"].get("loss")
    # Results written before profiling existed have none of these: they stay empty.
    row.update({k: result.get("profile", {}).get(k, math.nan) for k in PROFILE_COLUMNS + LATENCY_SPREAD_COLUMNS})
    row["finetune_seconds"] = result.get("finetune_seconds", math.nan)
    for t in tasks:
        seconds = [r["seconds"] for r in runs if r["task"] == t.name and r.get("seconds") is not None]
        row[f"finetune_seconds_{t.name}"] = float(np.mean(seconds)) if seconds else math.nan
    return row


def _read(path: Path) -> dict:
    return json.loads(path.read_text())


def _unreadable(path: Path) -> bool:
    """Whether `path` exists but is not a JSON object."""
    try:
        return path.exists() and not isinstance(_read(path), dict)
    except (OSError, ValueError):
        return True


def _corrupt(model: str, kind: str, path: Path, error: Exception) -> dict:
    """The row of a model whose files cannot be read: status `corrupt`, the reason in one line."""
    first = next((ln for ln in str(error).splitlines() if ln.strip()), type(error).__name__)
    return {"model": model, "kind": kind, "status": "corrupt", "reason": f"{path.name}: {type(error).__name__}: {first}"[:300]}


def load(results_dir: str | Path, resamples: int = confidence.RESAMPLES, seed: int = confidence.SEED) -> pd.DataFrame:
    """Leaderboard of a sweep's results dir (finished or interrupted), sorted by the first
    objective (`rank_metric`).

    Rows: `teacher`, one per candidate (the Tune trial id), and the reference rows `random_init`
    (the students' architecture with random weights, not distilled), any other
    `references/<name>/` row (e.g. `mlm_only`, `init_only`) and `task-kd-<task>` (task-specific
    distillation, scored on its task only: no macro_score).

    Columns: model, kind (teacher/student/reference/task_distill), status (done; incomplete for a
    trial with only config.json; the `status` of its status.json, e.g. stopped or failed, for a
    trial without result.json), alpha_ce, alpha_mlm, alpha_cos, alpha_mse, temperature,
    layer_selection, macro_score (GLUE; empty without GLUE tasks), pct_teacher (macro as % of
    the teacher's), gain_over_random_init and gain_over_<reference> (macro minus that reference
    row's, points), delta_vs_default (macro minus the paper-default candidate's, points); with
    the spec's own tasks, tasks_macro and the same four on it: pct_teacher_tasks,
    gain_over_<reference>_tasks, gain_over_init_tasks, delta_vs_default_tasks; each of these
    with a 95 % interval in `<col>_lo` / `<col>_hi`, p_best (share of bootstrap resamples in
    which the student has the highest score of the done students, on the ranking metric), one
    column per GLUE split (cola ... wnli, mnli_m and mnli_mm), then one per split of each own
    task (`<task><suffix>`), <col>_std with several seeds, n_params (encoder parameters),
    size_mb (weight files on disk, MB = 1e6 bytes), latency_ms_b1 / latency_ms_b32 (CPU forward
    pass at 128 tokens, milliseconds per example at batch 1 / 32; see distil.profile) with the
    spread over timing rounds in latency_ms_b1_min/_max and latency_ms_b32_min/_max,
    distill_loss, finetune_seconds (fine-tuning + evaluation, seconds summed over tasks and
    seeds), finetune_seconds_<task> per own task (one run, mean over seeds), trial_index (0, 1,
    ... in order of trial start, from config.json's `started`; empty for the teacher),
    paper_defaults (True on the candidate run with search.points_to_evaluate[0]), seeds,
    subset_data (splits only available as subsets), at_chance (split columns where the row
    scores at or below the majority-class score), and, when status.json files exist, rung,
    proxy_score and reason. Columns a result file lacks (e.g. profiles of an older sweep,
    predictions for intervals) are empty.

    Sweep-wide facts are in `df.attrs` (kept in leaderboard.parquet): "chance" {column: score},
    "chance_rule" {own column: what the chance prediction is}, "bootstrap" (method, resamples,
    seed, level, paper_defaults, excluded {model: why}), "provenance" {field: {value: [models]}},
    "include_wnli", "tasks" (the own tasks' fields), "glue_tasks" (GLUE tasks the spec runs),
    "rank_by" (the ranking metric) and "comparison" (teacher vs best student on each own task,
    see comparison_table). `resamples`/`seed`: the paired bootstrap's (distil.confidence);
    resamples=0 skips the intervals.
    """
    results_dir = Path(results_dir)
    spec_file = results_dir / "spec.json"
    spec = _read(spec_file) if spec_file.exists() and not _unreadable(spec_file) else {}  # damaged: GLUE defaults
    include_wnli = spec.get("glue", {}).get("include_wnli", True)
    own = own_tasks(spec)
    wanted = spec.get("glue", {}).get("tasks", "all")
    glue_run = list(TASKS) if wanted == "all" else [t for t in TASKS if t in wanted]
    rows, row_dirs, provenance = [], {}, []
    for path in [results_dir / "teacher" / "result.json", *sorted(results_dir.glob("references/*/result.json"))]:
        if path.exists():
            try:
                result = _read(path)
                row = row_from_result(result, include_wnli, own)
            except Exception as e:  # a damaged file makes its own row corrupt, never the report
                rows.append(_corrupt(path.parent.name, "teacher" if path.parent.name == "teacher" else "reference", path, e))
                continue
            rows.append({"model": path.parent.name, "kind": result.get("kind", "teacher"), "status": "done", **row})
            row_dirs[path.parent.name] = path.parent
            provenance.append((path.parent.name, result.get("provenance")))
    started, candidates = {}, {}
    for cand in sorted((results_dir / "candidates").glob("*")):
        try:
            config = _read(cand / "config.json") if (cand / "config.json").exists() else None
            status = _read(cand / "status.json") if (cand / "status.json").exists() else {}
            result = _read(cand / "result.json") if (cand / "result.json").exists() else None
            row = row_from_result(result, include_wnli, own) if result is not None else None
        except Exception as e:
            bad = next((f for f in ("result.json", "config.json", "status.json") if _unreadable(cand / f)), "result.json")
            rows.append(_corrupt(cand.name, "student", cand / bad, e))
            continue
        extra = {k: status[k] for k in ("rung", "proxy_score", "reason") if k in status}
        if config:
            started[cand.name] = config.get("started", math.nan)
        if result is not None:
            rows.append({"model": cand.name, "kind": "student", "status": "done", **row, **extra})
            row_dirs[cand.name] = cand
            provenance.append((cand.name, result.get("provenance")))
        elif config or status:
            result = {}
            params = (config or {}).get("params", {})
            rows.append({"model": cand.name, "kind": "student", "status": status.get("status", "incomplete"),
                         **{k: params.get(k) for k in CONFIG_COLUMNS}, **extra})
        else:
            continue
        candidates[cand.name] = {"params": result.get("params") or (config or {}).get("params", {}), "done": bool(result),
                                 "label": (config or {}).get("label"), "started": (config or {}).get("started")}
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    for c in _order(own):  # keep every column, e.g. an empty mnli_mm offline
        if c not in df.columns:
            df[c] = math.nan
    order = pd.Series(started, dtype=float).rank(method="first") - 1  # 0 = the first trial started
    df["trial_index"] = df["model"].map(order).astype("Int64")
    df["paper_defaults"] = df["model"] == paper_default_model(candidates, spec)
    for metric in families(own):
        _add_relative(df, metric)
    df.attrs.update(include_wnli=include_wnli, provenance=_provenance(provenance), tasks=[asdict(t) for t in own],
                    glue_tasks=glue_run, rank_by=rank_metric(df, spec))
    done = {m: d for m, d in row_dirs.items() if m in set(df.loc[df["status"] == "done", "model"])}
    resampled = _add_confidence(df, done, own, include_wnli, resamples, seed)
    df.attrs["comparison"] = _comparison(df, own, resampled)
    df = df[_columns(df, own)]
    return df.sort_values(df.attrs["rank_by"], ascending=False, na_position="last").reset_index(drop=True)


def families(tasks) -> list[str]:
    """The macros a leaderboard has: macro_score always (empty without GLUE), tasks_macro with own tasks."""
    return ["macro_score"] + ([TASKS_MACRO] if tasks else [])


def rank_metric(df: pd.DataFrame, spec: dict) -> str:
    """The column rows are ranked by (and the best student chosen on): spec.json's first
    search.objectives when the leaderboard has it with a value, else macro_score, else
    tasks_macro (an older sweep's spec, or one whose scores are all missing)."""
    first = (spec.get("search", {}).get("objectives") or ["macro_score"])[0]
    for c in (first, "macro_score", TASKS_MACRO):
        if c in df and df[c].notna().any():
            return c
    return first if first in df else "macro_score"


def _add_relative(df: pd.DataFrame, metric: str) -> None:
    """pct_teacher, gain_over_<reference>, gain_over_init, delta_vs_default on `metric` (a
    macro), each with FAMILIES[metric] appended to its name (in place)."""
    sfx = FAMILIES[metric]
    teacher = df.loc[df["kind"] == "teacher", metric]
    if len(teacher):
        df["pct_teacher" + sfx] = 100 * df[metric] / teacher.iloc[0]
    for ref in reference_rows(df, metric):
        df[f"gain_over_{ref}{sfx}"] = df[metric] - df.loc[df["model"] == ref, metric].iloc[0]
    value_of = df.set_index("model")[metric]
    inits = init_rows(df, metric)
    df["gain_over_init" + sfx] = [r[metric] - value_of[inits[r["model"]]] if r["model"] in inits else math.nan
                                  for _, r in df.iterrows()]
    default = df.loc[df["paper_defaults"] & (df["status"] == "done"), metric]
    if len(default):
        df["delta_vs_default" + sfx] = df[metric] - default.iloc[0]


def _order(tasks=()) -> list[str]:
    tasks_block = [TASKS_MACRO, "pct_teacher_tasks", "gain_over_random_init_tasks", "delta_vs_default_tasks"] if tasks else []
    return ["model", "kind", "status", *CONFIG_COLUMNS, "macro_score", "pct_teacher", "gain_over_random_init",
            "delta_vs_default", *tasks_block, "p_best", *all_columns(tasks), "n_params", *PROFILE_COLUMNS,
            *LATENCY_SPREAD_COLUMNS, "distill_loss", "finetune_seconds", *(f"finetune_seconds_{t.name}" for t in tasks),
            "trial_index", "paper_defaults"]


def _columns(df: pd.DataFrame, tasks=()) -> list[str]:
    """_order(), each gain_over_<reference> of a macro after its gain_over_random_init, every
    interval column (`_lo`, `_hi`) right after its column, then the rest (seeds, subset_data,
    at_chance, _std)."""
    base = _order(tasks)
    for metric in families(tasks):
        sfx = FAMILIES[metric]
        anchor = f"gain_over_random_init{sfx}"
        others = sorted(c for c in df.columns if c.startswith("gain_over_") and c != anchor and c.endswith(sfx)
                        and not c.endswith(("_lo", "_hi")) and (sfx or not c.endswith("_tasks")))
        at = base.index(anchor) + 1
        base[at:at] = others
    out = []
    for c in base:
        out += [c] + [c + s for s in ("_lo", "_hi") if c + s in df.columns]
    return out + [c for c in df.columns if c not in out]


def reference_rows(df: pd.DataFrame, metric: str = "macro_score") -> list[str]:
    """Names of the reference rows with a `metric` (macro_score or tasks_macro) that every row is
    compared with (random_init, mlm_only, ...; not task-kd, not init_only-<rule>: see init_rows)."""
    if metric not in df:
        return []
    refs = df[(df["kind"] == "reference") & df[metric].notna() & ~df["model"].astype(str).str.startswith(INIT_PREFIX)]
    return sorted(refs["model"].astype(str), key=lambda m: (m != "random_init", m))


INIT_PREFIX = "init_only-"


def init_rows(df: pd.DataFrame, metric: str = "macro_score") -> dict[str, str]:
    """{model: its init_only-<rule> row} for every row whose layer rule has an init_only row with
    a `metric`: gain_over_init compares a student with the undistilled student of its own init."""
    inits = set(df.loc[df["model"].astype(str).str.startswith(INIT_PREFIX) & df[metric].notna(), "model"])
    out = {}
    for _, r in df.iterrows():
        name = f"{INIT_PREFIX}{str(r.get('layer_selection')).replace(',', '-')}"
        if name in inits and r["model"] != name and r["kind"] in ("student", "reference"):
            out[r["model"]] = name
    return out


def paper_default_model(candidates: dict[str, dict], spec: dict) -> str | None:
    """The candidate run with the paper's defaults, or None.

    candidates: trial id -> {"params", "label", "done", "started"} (from config.json/result.json),
    in any order. A candidate whose config.json says `"label": "paper defaults"` (the sweep marks
    the trial it starts with search.points_to_evaluate[0]) is it; results without labels are
    matched on their params against spec.json's points_to_evaluate[0] and fixed search values
    (numbers with isclose, the layer selection by its canonical key). Several: the done one that
    started first."""
    from distil.spec import layer_key  # late: keeps pydantic out of a plain `import distil.leaderboard`

    search = spec.get("search", {})
    points = search.get("points_to_evaluate") or []
    point = {**{k: v for k, v in search.items() if k in CONFIG_COLUMNS and not isinstance(v, dict)}, **(points[0] if points else {})}
    point = {k: layer_key(v) if k == "layer_selection" else v for k, v in point.items()}

    def same(params: dict) -> bool:
        for k, v in point.items():
            got = params.get(k)
            if got is None and k not in points[0]:
                continue  # a fixed value the params do not record
            if got is None or not (math.isclose(float(got), float(v)) if isinstance(v, (int, float)) else str(got) == str(v)):
                return False
        return True

    labelled = [m for m, c in candidates.items() if c.get("label") == "paper defaults"]
    matches = labelled or ([m for m, c in candidates.items() if same(c.get("params") or {})] if points else [])
    key = lambda m: (not candidates[m].get("done"), candidates[m].get("started") or math.inf)
    return min(matches, key=key) if matches else None


def _provenance(per_row: list[tuple[str, dict | None]]) -> dict:
    """{field: {value: [models]}} over the rows' result.json "provenance" (data_sha256 per file,
    as "data_sha256:<file>"); empty when no row has one."""
    out: dict = {}
    for model, prov in per_row:
        for key, value in (prov or {}).items():
            items = value.items() if isinstance(value, dict) else [(None, value)]
            for name, v in items:
                field = key if name is None else f"{key}:{name}"
                out.setdefault(field, {}).setdefault(str(v), []).append(model)
    return out


def _add_confidence(df: pd.DataFrame, row_dirs: dict[str, Path], tasks: list[Task], include_wnli: bool, resamples: int,
                    seed: int) -> dict[str, dict[str, np.ndarray]]:
    """Add the interval columns, p_best and at_chance to df (in place) and attrs "chance",
    "chance_rule" and "bootstrap". Rows whose predictions are missing, or do not reproduce the
    scores in their result.json (within 0.01 points), get no intervals; attrs["bootstrap"]
    ["excluded"] says why. Returns the resampled split scores {model: {column: (B,)}} of the rows
    with intervals ({} with resamples=0)."""
    columns = all_columns(tasks)
    splits, excluded = confidence.load_splits(row_dirs, tasks)
    chance = confidence.chance_scores(splits)
    chance = {c: chance[c] for c in columns if c in chance}
    by_model = df.set_index("model")
    full = confidence.resampled_columns(splits, resamples=0)
    for model, got in full.items():
        expected = {c for c in columns if pd.notna(by_model.at[model, c])}
        off = [c for c in sorted(expected | set(got))
               if c not in got or c not in expected or abs(got[c][0] - by_model.at[model, c]) > 0.01]
        if off:
            excluded[model] = f"its predictions do not reproduce its result.json scores on {', '.join(off)}"
    kept = {c: confidence.Split(s.column, s.idx, s.labels, {m: p for m, p in s.preds.items() if m not in excluded}, s.task,
                                s.position)
            for c, s in splits.items()}
    resampled, values = {}, {}  # values: metric -> {model: (B,) resampled metric}
    rank_by = df.attrs.get("rank_by", "macro_score")
    if resamples > 0:
        resampled = {m: v for m, v in confidence.resampled_columns(kept, resamples, seed).items() if m not in excluded}
        of = {"macro_score": lambda cols: macro_score(cols, include_wnli), TASKS_MACRO: lambda cols: macro_over(cols, tasks)}
        for metric in {*families(tasks), rank_by}:
            get = of.get(metric, lambda cols, c=metric: cols.get(c, math.nan))  # a single split column
            values[metric] = {m: v for m, cols in resampled.items() if isinstance(v := get(cols), np.ndarray)
                              and pd.notna(by_model.at[m, metric])}

    def fill(column: str, ref: str | None, how: str, metric: str) -> None:
        df[column + "_lo"] = df[column + "_hi"] = math.nan  # the same columns with or without predictions
        got = values.get(metric, {})
        if ref not in got:
            return
        bounds = {m: confidence.paired_interval(v, got[ref], how) for m, v in got.items()}
        df[column + "_lo"] = df["model"].map({m: b[0] for m, b in bounds.items()})
        df[column + "_hi"] = df["model"].map({m: b[1] for m, b in bounds.items()})

    teacher = df.loc[df["kind"] == "teacher", "model"]
    default = df.loc[df["paper_defaults"] & (df["status"] == "done"), "model"]
    for metric in families(tasks):
        sfx, got = FAMILIES[metric], values.get(metric, {})
        fill("pct_teacher" + sfx, teacher.iloc[0] if len(teacher) else None, "percent", metric)
        for ref in reference_rows(df, metric):
            fill(f"gain_over_{ref}{sfx}", ref, "difference", metric)
        fill("delta_vs_default" + sfx, default.iloc[0] if len(default) else None, "difference", metric)
        # gain_over_init: each row against the init_only row of its own layer rule.
        bounds = {m: confidence.paired_interval(got[m], got[ref], "difference")
                  for m, ref in init_rows(df, metric).items() if m in got and ref in got}
        df["gain_over_init" + sfx + "_lo"] = df["model"].map({m: b[0] for m, b in bounds.items()})
        df["gain_over_init" + sfx + "_hi"] = df["model"].map({m: b[1] for m, b in bounds.items()})
    ranked = values.get(rank_by, {})
    students = [m for m in df.loc[df["kind"] == "student", "model"] if m in ranked]
    if students:
        df["p_best"] = df["model"].map(dict(zip(students, confidence.p_best(np.stack([ranked[m] for m in students], 1)))))
    df["at_chance"] = [" ".join(c for c in columns if c in chance and pd.notna(r[c]) and r[c] <= chance[c] + 1e-6)
                       for _, r in df.iterrows()]
    own = set(all_columns(tasks)) - set(score_columns())
    df.attrs["chance"] = chance
    df.attrs["chance_rule"] = {c: confidence.chance_rule(splits[c]) for c in columns if c in own and c in splits}
    df.attrs["bootstrap"] = {
        "method": "paired percentile bootstrap over validation examples", "resamples": resamples, "seed": seed,
        "level": confidence.LEVEL, "rows": sorted({m for v in values.values() for m in v}), "students": len(students),
        "excluded": excluded, "paper_defaults": default.iloc[0] if len(default) else None,
    }
    return resampled


def _comparison(df: pd.DataFrame, tasks: list[Task], resampled: dict) -> list[dict]:
    """Seed 003's comparison on each own task: the teacher and the done student with the best
    score on that task (its split columns' mean), each with its score, % of the teacher's (95 %
    paired interval when resampled), one fine-tuning run's seconds (mean over seeds), latency at
    batch 1 and 32, parameters, and the teacher's latency / fine-tuning seconds / parameters
    over the row's (speed-up ×). JSON-ready dicts (None for missing), teacher first per task."""
    teacher = df[df["kind"] == "teacher"]
    done = df[(df["kind"] == "student") & (df["status"] == "done")]
    out = []

    def num(v):
        return None if v is None or pd.isna(v) else float(v)

    for task in tasks:
        cols = [c for c in task.columns() if c in df]
        score = lambda r: np.nanmean([r[c] for c in cols]) if any(pd.notna(r[c]) for c in cols) else math.nan  # noqa: E731
        resampled_score = lambda m: macro_over(resampled.get(m, {}), [task])  # noqa: E731
        scored = done.assign(_score=[score(r) for _, r in done.iterrows()]).dropna(subset=["_score"])
        t = teacher.iloc[0] if len(teacher) else None
        best = scored.loc[scored["_score"].idxmax()] if len(scored) else None
        t_score = score(t) if t is not None else math.nan
        for role, row in (("teacher", t), ("best student", best)):
            if row is None:
                continue
            s = score(row)
            entry = {"task": task.name, "role": role, "model": str(row["model"]), "score": num(s),
                     "pct_teacher": num(100 * s / t_score) if t_score and pd.notna(t_score) else None,
                     "pct_teacher_lo": None, "pct_teacher_hi": None,
                     "finetune_seconds": num(row.get(f"finetune_seconds_{task.name}")), "n_params": num(row.get("n_params")),
                     **{k: num(row.get(k)) for k in ("latency_ms_b1", "latency_ms_b32")}}
            a, b = resampled_score(entry["model"]), resampled_score(str(t["model"])) if t is not None else math.nan
            if isinstance(a, np.ndarray) and isinstance(b, np.ndarray):
                entry["pct_teacher_lo"], entry["pct_teacher_hi"] = confidence.paired_interval(a, b, "percent")
            for key, name in (("latency_ms_b1", "speedup_b1"), ("latency_ms_b32", "speedup_b32"),
                              ("finetune_seconds", "finetune_speedup"), ("n_params", "params_ratio")):
                theirs = num(t.get(key) if key != "finetune_seconds" else t.get(f"finetune_seconds_{task.name}")) if t is not None else None
                entry[name] = theirs / entry[key] if theirs and entry[key] else None
            out.append(entry)
    return out


def best_student(df: pd.DataFrame) -> pd.Series | None:
    """The leaderboard row of the done student with the highest ranking metric
    (df.attrs["rank_by"], macro_score by default), or None."""
    metric = df.attrs.get("rank_by", "macro_score")
    metric = metric if metric in df else "macro_score"
    done = df[(df["kind"] == "student") & (df["status"] == "done") & df[metric].notna()]
    return None if done.empty else done.loc[done[metric].idxmax()]


def write(df: pd.DataFrame, results_dir: str | Path) -> None:
    """Write leaderboard.csv and leaderboard.parquet (full precision; the parquet keeps df.attrs)
    and leaderboard.md (headline, rounded table, chance row, notes)."""
    results_dir = Path(results_dir)
    df.to_csv(results_dir / "leaderboard.csv", index=False)
    df.to_parquet(results_dir / "leaderboard.parquet", index=False)
    (results_dir / "leaderboard.md").write_text(to_markdown(df))


REFERENCE_NOTES = {
    "random_init": "the students' architecture with random weights, no distillation",
    "mlm_only": "the students' architecture trained from random weights with the MLM loss alone on the same "
                "token budget, no teacher: the gain over it is the value of distillation",
    "init_only": "the student initialised from the teacher's layers, not distilled",
}
INIT_NOTE = ("init_only-<rule>: the candidates' architecture initialised from the teacher's layers by <rule>, with no "
             "distillation step; gain_over_init = macro_score minus the macro_score of the init_only row of the row's own "
             "layer rule (points): what the distillation steps added to the copied layers.")
CHANCE_MARK = "†"
CLEAR_MARGIN = 5.0  # points above the majority class for "the teacher clears chance" on a task


def _column_tasks(df: pd.DataFrame) -> dict[str, Task]:
    """Split column -> Task, GLUE's and the own tasks in df.attrs["tasks"]."""
    return confidence.task_columns(own_tasks(df.attrs))


def _columns_of(df: pd.DataFrame) -> list[str]:
    return all_columns(own_tasks(df.attrs))


def is_paper_defaults(row) -> bool:
    """Whether a row is the paper-default candidate (False when the column is missing or empty)."""
    return bool(row.get("paper_defaults")) if pd.notna(row.get("paper_defaults")) else False


def interval_text(row, column: str, digits: int = 2) -> str:
    lo, hi = row.get(column + "_lo"), row.get(column + "_hi")
    return f" [{lo:.{digits}f}, {hi:.{digits}f}]" if pd.notna(lo) and pd.notna(hi) else ""


def _verdict(lo, hi) -> str:
    if pd.isna(lo) or pd.isna(hi):
        return "no interval (no saved predictions)"
    level = f"{100 * confidence.LEVEL:.0f} %"
    return f"better at {level}" if lo > 0 else f"worse at {level}" if hi < 0 else f"not distinguishable at {level}"


def _task_scores(row, columns: list[str], tasks: dict[str, Task]) -> dict[str, float]:
    by_task: dict[str, list[float]] = {}
    for c in columns:
        if pd.notna(row.get(c)):
            by_task.setdefault(tasks[c].name, []).append(float(row[c]))
    return {t: float(np.mean(v)) for t, v in by_task.items()}


def chance_margins(df: pd.DataFrame, row: pd.Series) -> dict[str, float]:
    """{task: the row's task score minus the majority-class score} over the GLUE tasks in the
    macro (WNLI only with include_wnli) and the own tasks that have both; empty without
    df.attrs["chance"]."""
    chance, tasks = df.attrs.get("chance") or {}, _column_tasks(df)
    level, scores = _task_scores(chance, list(chance), tasks), _task_scores(row, list(chance), tasks)
    keep = lambda t: t in scores and (t != "wnli" or df.attrs.get("include_wnli", True))  # noqa: E731
    return {t: scores[t] - level[t] for t in level if keep(t)}


def chance_summary(df: pd.DataFrame) -> str:
    """'the teacher clears the majority class by >= 5 points on k of n tasks (own task +margin,
    ...); at chance: ...' (tasks in the macros); empty without a chance level (no saved predictions)."""
    if not df.attrs.get("chance"):
        return ""
    teacher, best = df[df["kind"] == "teacher"], best_student(df)
    parts, at = [], []
    own = [t.name for t in own_tasks(df.attrs)]
    if len(teacher):
        margins = chance_margins(df, teacher.iloc[0])
        clears = [t for t, m in margins.items() if m >= CLEAR_MARGIN]
        named = ", ".join(f"{t} {margins[t]:+.1f}" for t in own if t in margins)
        parts.append(f"the teacher clears the majority class by ≥ {CLEAR_MARGIN:.0f} points on {len(clears)} of "
                     f"{len(margins)} tasks" + (f" ({named})" if named else ""))
        at.append(("teacher", [t for t, m in margins.items() if m <= 1e-6]))
    if best is not None:
        at.append(("best student", [t for t, m in chance_margins(df, best).items() if m <= 1e-6]))
    named = [f"{who} on {', '.join(ts)}" for who, ts in at if ts]
    parts.append(f"at chance: {'; '.join(named)}" if named else "no task at chance for the teacher or the best student")
    return "; ".join(parts)


def _seeds_phrase(row, df: pd.DataFrame) -> str:
    seeds = [s for s in str(row.get("seeds") or "").split(",") if s]
    tasks, columns = _column_tasks(df), _columns_of(df)
    multi = list(dict.fromkeys(tasks[c].name for c in columns if pd.notna(row.get(c + "_std"))))
    if len(seeds) <= 1 or not multi:
        return f"1 fine-tuning seed ({seeds[0] if seeds else '?'})"
    single = [t for t in _task_scores(row, columns, tasks) if t not in multi]
    return (f"{len(seeds)} fine-tuning seeds ({', '.join(seeds)}) on {', '.join(multi)}"
            + (f", 1 on {', '.join(single)}" if single else ""))


def _family(df: pd.DataFrame, metric: str) -> str:
    """The derived-column suffix that goes with a ranking metric: a macro's own, else that of
    the macro its column belongs to ("_tasks" for an own task's column)."""
    if metric in FAMILIES:
        return FAMILIES[metric]
    return "_tasks" if metric in _columns_of(df) and metric not in score_columns() else ""


def _name(metric: str) -> str:
    return "macro" if metric == "macro_score" else metric


def _macro_line(df: pd.DataFrame, row, metric: str) -> str:
    """'<metric> 55.20, 97.0 % of teacher [95.1, 98.9]' of one row; for tasks_macro followed by
    ': <task> <score> (teacher <score>), ...'."""
    sfx, teacher = FAMILIES[metric], df[df["kind"] == "teacher"]
    text = f"{_name(metric)} {row[metric]:.2f}"
    if pd.notna(row.get("pct_teacher" + sfx)):
        text += f", {row['pct_teacher' + sfx]:.1f} % of teacher{interval_text(row, 'pct_teacher' + sfx, 1)}"
    if metric == TASKS_MACRO:
        t = teacher.iloc[0] if len(teacher) else {}
        scores = _task_scores(row, _columns_of(df), _column_tasks(df))
        theirs = _task_scores(t, _columns_of(df), _column_tasks(df)) if len(teacher) else {}
        text += ": " + ", ".join(f"{task.name} {scores[task.name]:.2f}" + (f" (teacher {theirs[task.name]:.2f})" if task.name in theirs else "")
                                 for task in own_tasks(df.attrs) if task.name in scores)
    return text


def headline(df: pd.DataFrame) -> str:
    """What a person reads first (a few lines, plain text; top of leaderboard.md and report.html):
    the best student by the ranking metric (df.attrs["rank_by"]: the first search objective),
    its % of teacher and its difference to the paper defaults with 95 % intervals and a verdict
    (better / not distinguishable / worse); a line for tasks_macro (own tasks) and for the GLUE
    macro when they are not the ranking metric; its gain over each reference row (over mlm_only:
    the value of distillation), the seeds, how many tasks the teacher clears chance on and which
    tasks sit at chance, and how the intervals were made."""
    best = best_student(df)
    if best is None:
        return "No student has finished yet: nothing to rank."
    rank = df.attrs.get("rank_by", "macro_score")
    rank = rank if rank in df else "macro_score"
    sfx, is_macro = _family(df, rank), rank in FAMILIES
    teacher = df[df["kind"] == "teacher"]
    lines = []
    first = f"best student `{best['model']}`{' (paper defaults)' if is_paper_defaults(best) else ''}: {_name(rank)} {best[rank]:.2f}"
    extra = []
    if is_macro and pd.notna(best.get("pct_teacher" + sfx)):
        extra.append(f"{best['pct_teacher' + sfx]:.1f} % of teacher{interval_text(best, 'pct_teacher' + sfx, 1)}")
    elif not is_macro and len(teacher) and pd.notna(teacher.iloc[0][rank]) and teacher.iloc[0][rank] > 0:
        extra.append(f"{100 * best[rank] / teacher.iloc[0][rank]:.1f} % of teacher")
    if pd.notna(best.get("p_best")):
        extra.append(f"first in {100 * best['p_best']:.0f} % of resamples")
    first += f" ({'; '.join(extra)})" if extra else ""
    delta = "delta_vs_default" + sfx if is_macro else None
    default = df[[is_paper_defaults(r) and r["kind"] == "student" for _, r in df.iterrows()]]
    if default.empty:
        first += "; no candidate ran the paper defaults (search.points_to_evaluate[0])"
    elif default.iloc[0]["status"] != "done":
        first += f"; the paper defaults `{default.iloc[0]['model']}` did not finish ({default.iloc[0]['status']})"
    elif default.iloc[0]["model"] == best["model"]:
        others = df[(df["kind"] == "student") & (df["status"] == "done") & df[rank].notna() & (df["model"] != best["model"])]
        if others.empty:
            first += "; it is the only finished student"
        elif delta is None:
            nxt = others.loc[others[rank].idxmax()]
            first += f"; vs the next best `{nxt['model']}` {best[rank] - nxt[rank]:+.2f} (no interval on a single column)"
        else:
            nxt = others.loc[others[rank].idxmax()]
            d, lo, hi = -nxt[delta], -nxt.get(delta + "_hi", math.nan), -nxt.get(delta + "_lo", math.nan)
            ci = f" [{lo:.2f}, {hi:.2f}]" if pd.notna(lo) and pd.notna(hi) else ""
            first += f"; vs the next best `{nxt['model']}` {d:+.2f}{ci} — {_verdict(lo, hi)}"
    elif delta is None:
        first += f"; vs paper defaults {best[rank] - default.iloc[0][rank]:+.2f} (no interval on a single column)"
    else:
        first += (f"; vs paper defaults {best[delta]:+.2f}{interval_text(best, delta)} — "
                  f"{_verdict(best.get(delta + '_lo'), best.get(delta + '_hi'))}")
    lines.append(first)
    if TASKS_MACRO in df and (rank != TASKS_MACRO or len(own_tasks(df.attrs)) > 1) and pd.notna(best.get(TASKS_MACRO)):
        lines.append("user tasks: " + _macro_line(df, best, TASKS_MACRO))
    if rank != "macro_score" and pd.notna(best.get("macro_score")):
        lines.append("GLUE: " + _macro_line(df, best, "macro_score"))
    gains = []
    for ref in sorted(reference_rows(df, TASKS_MACRO if sfx else "macro_score"), key=lambda r: r != "mlm_only"):
        g = best.get(f"gain_over_{ref}{sfx}")
        if pd.notna(g):
            what = " (the value of distillation)" if ref == "mlm_only" else ""
            gains.append(f"{ref}{what} {g:+.2f}{interval_text(best, f'gain_over_{ref}{sfx}')}")
    if gains:
        lines.append("gain over " + "; over ".join(gains) + f" {_name(TASKS_MACRO if sfx else 'macro_score')} points")
    lines.append(f"{_seeds_phrase(best, df)}" + (f"; {chance_summary(df)}" if chance_summary(df) else ""))
    boot = df.attrs.get("bootstrap") or {}
    if boot.get("rows"):
        lines.append(f"[lo, hi]: {100 * boot['level']:.0f} % {boot['method']}, {boot['resamples']} resamples, seed {boot['seed']}")
    else:
        lines.append("no intervals: no saved predictions to resample")
    return "\n".join(lines)


def _task_note(task: Task) -> str:
    kind = (f"multi-label, {task.num_labels} labels, threshold {task.threshold:g}" if task.problem_type == MULTI
            else f"single-label, {task.num_labels} classes" if task.num_labels and task.num_labels > 1 else "regression")
    return f"{task.name} ({kind}; {', '.join(task.metrics)})"


def conventions(df: pd.DataFrame) -> list[str]:
    """The notes printed under the leaderboard (markdown, html report): how to read its numbers."""
    subsets = sorted({s for v in df.get("subset_data", pd.Series(dtype=str)).dropna() for s in str(v).split()})
    profiled = any(c in df and df[c].notna().any() for c in PROFILE_COLUMNS)
    spread = any(c in df and df[c].notna().any() for c in LATENCY_SPREAD_COLUMNS)
    boot, chance = df.attrs.get("bootstrap") or {}, df.attrs.get("chance") or {}
    default = df[[is_paper_defaults(r) for _, r in df.iterrows()]]
    refs = [m for m in df.loc[df["kind"] == "reference", "model"].astype(str) if not m.startswith(INIT_PREFIX)]  # INIT_NOTE
    own = own_tasks(df.attrs)
    glue = "macro_score" in df and df["macro_score"].notna().any()
    rank = df.attrs.get("rank_by", "macro_score")
    rules = df.attrs.get("chance_rule") or {}
    notes = [
        "Scores ×100 on GLUE validation splits; macro_score = mean of task scores (mnli = mean of its splits present)."
        if glue else "No GLUE task in this sweep: macro_score (the GLUE macro) and the columns derived from it are empty.",
        f"User tasks (the spec's `tasks:`), ×100 on their eval split: {'; '.join(_task_note(t) for t in own)}; a task's score "
        "is the mean of its metrics (roc_auc: mean per-label ROC AUC on the probabilities; multi-label F1s on the "
        "probabilities thresholded); tasks_macro = mean of the user tasks' scores; pct_teacher_tasks, gain_over_<ref>_tasks, "
        "gain_over_init_tasks and delta_vs_default_tasks are pct_teacher, gain_over_<ref>, gain_over_init and "
        "delta_vs_default on tasks_macro instead of macro_score." if own else "",
        f"Ranked by {rank} (the spec's first search.objectives; the best student is the best by it)."
        if rank != "macro_score" or own else "",
        *[f"{r}: {REFERENCE_NOTES.get(r, 'a reference row')}; gain_over_{r} = macro_score minus its macro_score (points)."
          for r in refs],
        INIT_NOTE if df["model"].astype(str).str.startswith(INIT_PREFIX).any() else "",
        "task-kd-<task>: task-specific distillation, scored on that task only (no macro_score)."
        if (df["kind"] == "task_distill").any() else "",
        f"paper defaults: candidate `{default.iloc[0]['model']}`, run with the spec's search.points_to_evaluate[0] "
        "(the paper's settings); delta_vs_default = macro_score minus its macro_score (points)." if len(default) else "",
        f"[lo, hi]: {100 * boot['level']:.0f} % interval, {boot['method']}: {boot['resamples']} resamples of each split's "
        f"examples (numpy default_rng([{boot['seed']}, split position]); the same examples for every model), every metric "
        "recomputed on each resample, seeds averaged within a resample, then tasks and macros as above; intervals of "
        "differences and ratios are paired (taken within each resample). p_best = share of resamples in which the "
        f"student has the highest {rank} of the {boot.get('students', 0)} done students with intervals (ties share)."
        if boot.get("rows") else "",
        ("No intervals for " + "; ".join(f"{m} ({why})" for m, why in sorted(boot.get("excluded", {}).items())) + ".")
        if boot.get("excluded") else "",
        "chance = the score of predicting the majority class of each split's validation sample (a constant scores 0 on "
        "stsb and on cola's MCC" + ("; on a multi-label task each label's majority, scored as a constant probability: "
                                    "ROC AUC 50" if any(t.problem_type == MULTI for t in own) else "") + "): "
        + ", ".join(f"{c} {v:.2f}" + (f" ({rules[c]})" if c in rules else "") for c, v in chance.items())
        + f"; {CHANCE_MARK} marks a score at or below it." if chance else "",
        f"Seeds: {', '.join(sorted(set(df['seeds'].dropna()) - {''}))}; a score with a matching _std column is the mean "
        "over seeds (sample std in that column), the others come from the first seed." if "seeds" in df else "",
        f"Only available as subsets (task:split): {', '.join(subsets)}." if subsets else "",
        "size_mb: weight files on disk (1e6 bytes); latency_ms_b1/_b32: CPU forward pass of 128 tokens, "
        "1 torch thread, milliseconds per example at batch 1/32"
        + (" (median over timing rounds, [min, max] of the rounds' medians); the Pareto front treats two latencies "
           "as equal when these ranges overlap or the models have the same n_params (same architecture)." if spread else ".")
        if profiled else "",
        "finetune_seconds: fine-tuning + evaluation summed over tasks and seeds (compute: the runs share the machine); "
        "finetune_seconds_<task>: one run of that task (mean over its seeds)." if own else "",
        "status stopped/failed: the trial was stopped early (rung, proxy_score) or failed (reason); it has no scores."
        if df["status"].isin(["stopped", "failed"]).any() else "",
        *provenance_notes(df.attrs.get("provenance") or {}),
        "Empty cells: no data for that split (e.g. mnli_mm offline), the trial did not finish, "
        "or the result predates that column.",
    ]
    return [n for n in notes if n]


def provenance_notes(provenance: dict) -> list[str]:
    """One note per provenance field (spec_sha256, git_commit, teacher_sha256, data_sha256 per
    file): its value once, or each value with the rows that carry it when the rows disagree."""
    def show(values: dict) -> str:
        if len(values) == 1:
            return next(iter(values))
        return "; ".join(f"{v} ({', '.join(models)})" for v, models in values.items())

    plain = [f"{k}: {show(v)}" for k, v in provenance.items() if not k.startswith("data_sha256:")]
    files = {k.split(":", 1)[1]: v for k, v in sorted(provenance.items()) if k.startswith("data_sha256:")}
    root = os.path.commonpath(list(files)) if len(files) > 1 else os.path.dirname(next(iter(files), ""))
    data = [f"{os.path.relpath(f, root) if root else f} {show(v)}" for f, v in files.items()]
    under = f" (under {root})" if root else ""
    return ([f"Provenance: {'; '.join(plain)}."] if plain else []) + ([f"Data sha256{under}: {'; '.join(data)}."] if data else [])


def hidden_empty_columns(df: pd.DataFrame) -> set[str]:
    """Columns a sweep cannot fill, left out of the displayed tables when empty: GLUE tasks the
    spec does not run, and without any GLUE task the macro_score family (csv/parquet keep them)."""
    run = df.attrs.get("glue_tasks", list(TASKS))
    out = {c + x for t in TASKS.values() if t.name not in run for c in t.columns() for x in ("", "_std")}
    if not run:
        out |= {c for c in df.columns if c in ("macro_score", "pct_teacher", "delta_vs_default")
                or (c.startswith("gain_over_") and not c.endswith("_tasks"))}
    return {c for c in out if c in df and df[c].isna().all()}


def formatted(df: pd.DataFrame) -> pd.DataFrame:
    """The leaderboard as display strings (2 decimals, n_params in millions, empty for missing):
    the paper-default candidate's model shown as `<id> (paper defaults)`, each interval beside
    its value (`+1.20 [-0.40, 2.80]`), a latency's round spread likewise, a score at or below
    chance marked with †, and a `chance` row at the end; without the long seeds, subset_data,
    at_chance and per-task finetune_seconds_<task> columns (summarised by `conventions` and
    `comparison_table`), and without the columns of GLUE tasks the sweep does not run."""
    def cell(v, column):
        if pd.isna(v):
            return ""
        if column == "n_params":
            return f"{v / 1e6:.1f}M"
        if column in ("n_layers", "rung"):
            return f"{int(v)}"
        return f"{v:.2f}" if isinstance(v, float) else str(v)

    pairs = {c: (c + lo, c + hi) for c in df.columns for lo, hi in (("_lo", "_hi"), ("_min", "_max"))
             if c + lo in df.columns and c + hi in df.columns}
    hidden = {"subset_data", "seeds", "at_chance", "paper_defaults", *(x for p in pairs.values() for x in p),
              *(c for c in df.columns if c.startswith("finetune_seconds_"))}
    empty = hidden_empty_columns(df)
    hidden |= empty | {x for c in empty if c in pairs for x in pairs[c]}
    shown = [c for c in df.columns if c not in hidden]
    out = {}
    for c in shown:
        values = []
        for _, r in df.iterrows():
            text = cell(r[c], c)
            if c == "model" and is_paper_defaults(r):
                text += " (paper defaults)"
            if c in pairs and text and pd.notna(r[pairs[c][0]]) and pd.notna(r[pairs[c][1]]):
                text += f" [{cell(r[pairs[c][0]], c)}, {cell(r[pairs[c][1]], c)}]"
            if text and c in str(r.get("at_chance") or "").split():
                text += CHANCE_MARK
            values.append(text)
        out[c] = values
    table = pd.DataFrame(out)
    chance = df.attrs.get("chance") or {}
    if chance:
        row = {c: "" for c in shown} | {"model": "chance (majority class)"}
        row |= {c: f"{v:.2f}" for c, v in chance.items() if c in row}
        if "macro_score" in row:
            row["macro_score"] = cell(macro_score(chance, df.attrs.get("include_wnli", True)), "macro_score")
        if TASKS_MACRO in row:
            row[TASKS_MACRO] = cell(macro_over(chance, own_tasks(df.attrs)), TASKS_MACRO)
        table = pd.concat([table, pd.DataFrame([row])], ignore_index=True)
    return table


def comparison_sentences(df: pd.DataFrame) -> list[str]:
    """One line per own task: 'uci_news: best student `x` reaches 96.4 % [95.0, 97.9] of the
    teacher's score (84.10 vs 87.20) at 2.0× the speed (batch 32; 1.9× at batch 1), with 2.0×
    fewer parameters, fine-tuned in 0.52× the teacher's time' (from df.attrs["comparison"])."""
    rows = df.attrs.get("comparison") or []
    lines = []
    for task in dict.fromkeys(r["task"] for r in rows):
        by_role = {r["role"]: r for r in rows if r["task"] == task}
        t, s = by_role.get("teacher"), by_role.get("best student")
        if not t or not s or s["score"] is None:
            continue
        text = f"{task}: best student `{s['model']}` "
        if s["pct_teacher"] is not None:
            ci = f" [{s['pct_teacher_lo']:.1f}, {s['pct_teacher_hi']:.1f}]" if s["pct_teacher_lo"] is not None else ""
            text += f"reaches {s['pct_teacher']:.1f} %{ci} of the teacher's score ({s['score']:.2f} vs {t['score']:.2f})"
        else:
            text += f"scores {s['score']:.2f} (the teacher has no score)"
        if s["speedup_b32"] is not None:
            text += f" at {s['speedup_b32']:.1f}× the speed (batch 32"
            text += f"; {s['speedup_b1']:.1f}× at batch 1)" if s["speedup_b1"] is not None else ")"
        else:
            text += " (no latency measured)"
        if s["params_ratio"] is not None:
            text += f", with {s['params_ratio']:.1f}× fewer parameters"
        if s["finetune_speedup"] is not None:
            text += f", fine-tuned in {1 / s['finetune_speedup']:.2f}× the teacher's time"
        lines.append(text)
    return lines


def comparison_table(df: pd.DataFrame) -> pd.DataFrame:
    """Teacher vs best student on each own task, as display strings: task, model, score, % of
    teacher [95 % interval], fine-tune s (one run), latency ms/example at batch 1 and 32, speed-up
    (teacher latency / row latency, batch 32), parameters (M). Empty without own tasks."""
    def f(v, fmt):
        return "" if v is None else format(v, fmt)

    rows = []
    for r in df.attrs.get("comparison") or []:
        ci = f" [{r['pct_teacher_lo']:.1f}, {r['pct_teacher_hi']:.1f}]" if r["pct_teacher_lo"] is not None and r["role"] != "teacher" else ""
        rows.append({"task": r["task"], "model": f"{r['model']}" + (" (best student)" if r["role"] != "teacher" else ""),
                     "score": f(r["score"], ".2f"), "% of teacher": f(r["pct_teacher"], ".1f") + ci,
                     "fine-tune s (one run)": f(r["finetune_seconds"], ".1f"),
                     "latency ms b1": f(r["latency_ms_b1"], ".2f"), "latency ms b32": f(r["latency_ms_b32"], ".2f"),
                     "speed-up b32": f(r["speedup_b32"], ".2f") + ("×" if r["speedup_b32"] is not None else ""),
                     "params": f(r["n_params"] / 1e6 if r["n_params"] is not None else None, ".1f") + ("M" if r["n_params"] else "")})
    return pd.DataFrame(rows)


COMPARISON_NOTE = ("Per user task: the teacher and the done student with the best score on that task. Fine-tune s: one "
                   "fine-tuning + evaluation run of that task (result.json runs' seconds, mean over seeds; runs share the "
                   "machine with the sweep's other work, so read it as a rough cost). Latency: the profile measured alone on "
                   "the machine before the sweep (distil.profile: CPU, 1 thread, 128 tokens, ms per example; the same for "
                   "every student of one depth). Speed-up = the teacher's latency / the row's. % of teacher with its 95 % "
                   "paired bootstrap interval on that task's score.")


def to_markdown(df: pd.DataFrame) -> str:
    """The headline, the leaderboard as a markdown table (chance row last), the teacher-vs-best-
    student comparison on each own task, and the conventions as a bullet list."""
    table = formatted(df).to_markdown(index=False, disable_numparse=True)
    head = "\n".join(f"**{line}**  " if i == 0 else f"{line}  " for i, line in enumerate(headline(df).splitlines()))
    comparison = comparison_table(df)
    extra = ""
    if not comparison.empty:
        extra = ("\n\n### Teacher vs best student on each user task\n\n" + "\n".join(f"- {s}" for s in comparison_sentences(df))
                 + "\n\n" + comparison.to_markdown(index=False, disable_numparse=True) + "\n\n" + COMPARISON_NOTE)
    return head + "\n\n" + table + extra + "\n\n" + "\n".join(f"- {n}" for n in conventions(df)) + "\n"
