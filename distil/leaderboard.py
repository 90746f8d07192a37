"""Leaderboard: one row per candidate student plus the teacher, rebuilt from result files.

Conventions (as in the GLUE paper and DistilBERT's Table 1):
  * every score is ×100 on a validation split;
  * a split's score is the mean of its task's metrics (mrpc: F1 and accuracy; stsb: Pearson and
    Spearman; qqp: accuracy and F1); with several seeds, the mean over seeds (and `<col>_std`);
  * a task's score is the mean of its splits present (mnli: matched and mismatched);
  * macro_score is the mean of task scores over the tasks scored (9 with WNLI; `include_wnli:
    false` drops it). A column with no data (mnli_mm offline) stays empty and is not counted.

How sure the order is comes from distil.confidence: paired bootstrap intervals of pct_teacher,
the gains over the reference rows and the difference to the paper-default candidate, p_best, and
each split's chance (majority-class) score, all from the saved validation predictions.
`headline(df)` says it in three lines; `to_markdown(df)` puts it on top of the table.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd

from distil import confidence
from distil.glue import TASKS, score_columns

PROFILE_COLUMNS = ["size_mb", "latency_ms_b1", "latency_ms_b32"]  # from result.json's "profile" (distil.profile)
# Spread of the latency over timing rounds (min and max of the rounds' medians), when measured.
LATENCY_SPREAD_COLUMNS = ["latency_ms_b1_min", "latency_ms_b1_max", "latency_ms_b32_min", "latency_ms_b32_max"]
CONFIG_COLUMNS = ["alpha_ce", "alpha_mlm", "alpha_cos", "alpha_mse", "temperature", "layer_selection", "n_layers"]


def split_scores(glue_runs: list[dict]) -> dict[str, list[float]]:
    """{column (task + split suffix): [score of each seed]} from finetune_and_evaluate results."""
    out: dict[str, list[float]] = {}
    for run in sorted(glue_runs, key=lambda r: r["seed"]):
        for suffix, metrics in run["scores"].items():
            if metrics:
                out.setdefault(run["task"] + suffix, []).append(float(np.mean(list(metrics.values()))))
    return out


def macro_score(columns: dict, include_wnli: bool = True):
    """Mean over tasks of the mean of each task's present split columns; NaN if nothing is scored.

    Values are floats (one row) or equal-shaped arrays, e.g. (B,) bootstrap resamples
    (distil.confidence), so the intervals use this very convention. A column is absent when it
    is missing or NaN."""
    task_scores = []
    for task in TASKS.values():
        if task.name == "wnli" and not include_wnli:
            continue
        present = [np.asarray(columns[c], dtype=float) for c in (task.name + s for s in task.eval_splits)
                   if c in columns and not np.isnan(np.asarray(columns[c], dtype=float)).all()]
        if present:
            task_scores.append(np.mean(present, axis=0))
    if not task_scores:
        return math.nan
    macro = np.mean(task_scores, axis=0)
    return float(macro) if macro.ndim == 0 else macro


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
    row.update({k: result.get("profile", {}).get(k, math.nan) for k in PROFILE_COLUMNS + LATENCY_SPREAD_COLUMNS})
    row["finetune_seconds"] = result.get("finetune_seconds", math.nan)
    return row


def _read(path: Path) -> dict:
    return json.loads(path.read_text())


def load(results_dir: str | Path, resamples: int = confidence.RESAMPLES, seed: int = confidence.SEED) -> pd.DataFrame:
    """Leaderboard of a sweep's results dir (finished or interrupted), sorted by macro_score.

    Rows: `teacher`, one per candidate (the Tune trial id), and the reference rows `random_init`
    (the students' architecture with random weights, not distilled), any other
    `references/<name>/` row (e.g. `mlm_only`, `init_only`) and `task-kd-<task>` (task-specific
    distillation, scored on its task only: no macro_score).

    Columns: model, kind (teacher/student/reference/task_distill), status (done; incomplete for a
    trial with only config.json; the `status` of its status.json, e.g. stopped or failed, for a
    trial without result.json), alpha_ce, alpha_mlm, alpha_cos, alpha_mse, temperature,
    layer_selection, macro_score, pct_teacher (macro as % of the teacher's),
    gain_over_random_init and gain_over_<reference> (macro minus that reference row's, points),
    delta_vs_default (macro minus the paper-default candidate's, points), each of these four
    with a 95 % interval in `<col>_lo` / `<col>_hi`, p_best (share of bootstrap resamples in
    which the student has the highest macro of the done students), one column per GLUE split
    (cola ... wnli, mnli_m and mnli_mm), <col>_std with several seeds, n_params (encoder
    parameters), size_mb (weight files on disk, MB = 1e6 bytes), latency_ms_b1 / latency_ms_b32
    (CPU forward pass at 128 tokens, milliseconds per example at batch 1 / 32; see
    distil.profile) with the spread over timing rounds in latency_ms_b1_min/_max and
    latency_ms_b32_min/_max, distill_loss, finetune_seconds (GLUE fine-tuning + evaluation,
    seconds summed over tasks and seeds), trial_index (0, 1, ... in order of trial start, from
    config.json's `started`; empty for the teacher), paper_defaults (True on the candidate run
    with search.points_to_evaluate[0]), seeds, subset_data (splits only available as subsets),
    at_chance (split columns where the row scores at or below the majority-class score), and,
    when status.json files exist, rung, proxy_score and reason. Columns a result file lacks
    (e.g. profiles of an older sweep, predictions for intervals) are empty.

    Sweep-wide facts are in `df.attrs` (kept in leaderboard.parquet): "chance" {column: score},
    "bootstrap" (method, resamples, seed, level, paper_defaults, excluded {model: why}),
    "provenance" {field: {value: [models]}}, "include_wnli". `resamples`/`seed`: the paired
    bootstrap's (distil.confidence); resamples=0 skips the intervals.
    """
    results_dir = Path(results_dir)
    spec_file = results_dir / "spec.json"
    spec = _read(spec_file) if spec_file.exists() else {}
    include_wnli = spec.get("glue", {}).get("include_wnli", True)
    rows, row_dirs, provenance = [], {}, []
    for path in [results_dir / "teacher" / "result.json", *sorted(results_dir.glob("references/*/result.json"))]:
        if path.exists():
            result = _read(path)
            rows.append({"model": path.parent.name, "kind": result.get("kind", "teacher"), "status": "done",
                         **row_from_result(result, include_wnli)})
            row_dirs[path.parent.name] = path.parent
            provenance.append((path.parent.name, result.get("provenance")))
    started, candidates = {}, {}
    for cand in sorted((results_dir / "candidates").glob("*")):
        config = _read(cand / "config.json") if (cand / "config.json").exists() else None
        status = _read(cand / "status.json") if (cand / "status.json").exists() else {}
        extra = {k: status[k] for k in ("rung", "proxy_score", "reason") if k in status}
        if config:
            started[cand.name] = config.get("started", math.nan)
        if (cand / "result.json").exists():
            result = _read(cand / "result.json")
            rows.append({"model": cand.name, "kind": "student", "status": "done", **row_from_result(result, include_wnli), **extra})
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
    for c in _order():  # keep every column, e.g. an empty mnli_mm offline
        if c not in df.columns:
            df[c] = math.nan
    order = pd.Series(started, dtype=float).rank(method="first") - 1  # 0 = the first trial started
    df["trial_index"] = df["model"].map(order).astype("Int64")
    df["paper_defaults"] = df["model"] == paper_default_model(candidates, spec)
    teacher_macro = df.loc[df["kind"] == "teacher", "macro_score"]
    if len(teacher_macro):
        df["pct_teacher"] = 100 * df["macro_score"] / teacher_macro.iloc[0]
    for ref in reference_rows(df):
        df[f"gain_over_{ref}"] = df["macro_score"] - df.loc[df["model"] == ref, "macro_score"].iloc[0]
    macro_of = df.set_index("model")["macro_score"]
    inits = init_rows(df)
    df["gain_over_init"] = [r["macro_score"] - macro_of[inits[r["model"]]] if r["model"] in inits else math.nan
                            for _, r in df.iterrows()]
    default = df.loc[df["paper_defaults"] & (df["status"] == "done"), "macro_score"]
    if len(default):
        df["delta_vs_default"] = df["macro_score"] - default.iloc[0]
    df.attrs.update(include_wnli=include_wnli, provenance=_provenance(provenance))
    _add_confidence(df, {m: d for m, d in row_dirs.items() if m in set(df.loc[df["status"] == "done", "model"])},
                    include_wnli, resamples, seed)
    df = df[_columns(df)]
    return df.sort_values("macro_score", ascending=False, na_position="last").reset_index(drop=True)


def _order() -> list[str]:
    return ["model", "kind", "status", *CONFIG_COLUMNS, "macro_score", "pct_teacher", "gain_over_random_init",
            "delta_vs_default", "p_best", *score_columns(), "n_params", *PROFILE_COLUMNS, *LATENCY_SPREAD_COLUMNS,
            "distill_loss", "finetune_seconds", "trial_index", "paper_defaults"]


def _columns(df: pd.DataFrame) -> list[str]:
    """_order(), each gain_over_<reference> after gain_over_random_init, every interval column
    (`_lo`, `_hi`) right after its column, then the rest (seeds, subset_data, at_chance, _std)."""
    base = _order()
    at = base.index("gain_over_random_init") + 1
    base[at:at] = sorted(c for c in df.columns if c.startswith("gain_over_") and c != "gain_over_random_init"
                         and not c.endswith(("_lo", "_hi")))
    out = []
    for c in base:
        out += [c] + [c + s for s in ("_lo", "_hi") if c + s in df.columns]
    return out + [c for c in df.columns if c not in out]


def reference_rows(df: pd.DataFrame) -> list[str]:
    """Names of the reference rows with a macro_score that every row is compared with
    (random_init, mlm_only, ...; not task-kd, not init_only-<rule>: see init_rows)."""
    refs = df[(df["kind"] == "reference") & df["macro_score"].notna() & ~df["model"].astype(str).str.startswith(INIT_PREFIX)]
    return sorted(refs["model"].astype(str), key=lambda m: (m != "random_init", m))


INIT_PREFIX = "init_only-"


def init_rows(df: pd.DataFrame) -> dict[str, str]:
    """{model: its init_only-<rule> row} for every row whose layer rule has an init_only row with
    a macro_score: gain_over_init compares a student with the undistilled student of its own init."""
    inits = set(df.loc[df["model"].astype(str).str.startswith(INIT_PREFIX) & df["macro_score"].notna(), "model"])
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


def _add_confidence(df: pd.DataFrame, row_dirs: dict[str, Path], include_wnli: bool, resamples: int, seed: int) -> None:
    """Add the interval columns, p_best and at_chance to df (in place) and attrs "chance" and
    "bootstrap". Rows whose predictions are missing, or do not reproduce the scores in their
    result.json (within 0.01 points), get no intervals; attrs["bootstrap"]["excluded"] says why."""
    splits, excluded = confidence.load_splits(row_dirs)
    chance = confidence.chance_scores(splits)
    chance = {c: chance[c] for c in score_columns() if c in chance}
    by_model = df.set_index("model")
    full = confidence.resampled_columns(splits, resamples=0)
    for model, columns in full.items():
        expected = {c for c in score_columns() if pd.notna(by_model.at[model, c])}
        off = [c for c in sorted(expected | set(columns))
               if c not in columns or c not in expected or abs(columns[c][0] - by_model.at[model, c]) > 0.01]
        if off:
            excluded[model] = f"its predictions do not reproduce its result.json scores on {', '.join(off)}"
    kept = {c: confidence.Split(s.column, s.idx, s.labels, {m: p for m, p in s.preds.items() if m not in excluded})
            for c, s in splits.items()}
    macros = {}
    if resamples > 0:
        resampled = confidence.resampled_columns(kept, resamples, seed)
        macros = {m: macro_score(cols, include_wnli) for m, cols in resampled.items() if m not in excluded}
        macros = {m: v for m, v in macros.items() if isinstance(v, np.ndarray) and pd.notna(by_model.at[m, "macro_score"])}

    def fill(column: str, ref: str | None, how: str) -> None:
        df[column + "_lo"] = df[column + "_hi"] = math.nan  # the same columns with or without predictions
        if ref not in macros:
            return
        bounds = {m: confidence.paired_interval(v, macros[ref], how) for m, v in macros.items()}
        df[column + "_lo"] = df["model"].map({m: b[0] for m, b in bounds.items()})
        df[column + "_hi"] = df["model"].map({m: b[1] for m, b in bounds.items()})

    teacher = df.loc[df["kind"] == "teacher", "model"]
    fill("pct_teacher", teacher.iloc[0] if len(teacher) else None, "percent")
    for ref in reference_rows(df):
        fill(f"gain_over_{ref}", ref, "difference")
    default = df.loc[df["paper_defaults"] & (df["status"] == "done"), "model"]
    fill("delta_vs_default", default.iloc[0] if len(default) else None, "difference")
    # gain_over_init: each row against the init_only row of its own layer rule.
    bounds = {m: confidence.paired_interval(macros[m], macros[ref], "difference")
              for m, ref in init_rows(df).items() if m in macros and ref in macros}
    df["gain_over_init_lo"] = df["model"].map({m: b[0] for m, b in bounds.items()})
    df["gain_over_init_hi"] = df["model"].map({m: b[1] for m, b in bounds.items()})
    students = [m for m in df.loc[df["kind"] == "student", "model"] if m in macros]
    if students:
        df["p_best"] = df["model"].map(dict(zip(students, confidence.p_best(np.stack([macros[m] for m in students], 1)))))
    df["at_chance"] = [" ".join(c for c in score_columns() if c in chance and pd.notna(r[c]) and r[c] <= chance[c] + 1e-6)
                       for _, r in df.iterrows()]
    df.attrs["chance"] = chance
    df.attrs["bootstrap"] = {
        "method": "paired percentile bootstrap over validation examples", "resamples": resamples, "seed": seed,
        "level": confidence.LEVEL, "rows": sorted(macros), "students": len(students), "excluded": excluded,
        "paper_defaults": default.iloc[0] if len(default) else None,
    }


def best_student(df: pd.DataFrame) -> pd.Series | None:
    """The leaderboard row of the done student with the highest macro_score, or None."""
    done = df[(df["kind"] == "student") & (df["status"] == "done") & df["macro_score"].notna()]
    return None if done.empty else done.loc[done["macro_score"].idxmax()]


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


def _task_of(column: str) -> str:
    return next(t.name for t in TASKS.values() if column in [t.name + s for s in t.eval_splits])


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


def _task_scores(row, columns: list[str]) -> dict[str, float]:
    by_task: dict[str, list[float]] = {}
    for c in columns:
        if pd.notna(row.get(c)):
            by_task.setdefault(_task_of(c), []).append(float(row[c]))
    return {t: float(np.mean(v)) for t, v in by_task.items()}


def chance_margins(df: pd.DataFrame, row: pd.Series) -> dict[str, float]:
    """{task: the row's task score minus the majority-class score} over the tasks in the macro
    (WNLI only with include_wnli) that have both; empty without df.attrs["chance"]."""
    chance = df.attrs.get("chance") or {}
    level, scores = _task_scores(chance, list(chance)), _task_scores(row, list(chance))
    keep = lambda t: t in scores and (t != "wnli" or df.attrs.get("include_wnli", True))
    return {t: scores[t] - level[t] for t in level if keep(t)}


def chance_summary(df: pd.DataFrame) -> str:
    """'the teacher clears the majority class by >= 5 points on k of n tasks; at chance: ...'
    (tasks in the macro); empty without a chance level (no saved predictions)."""
    if not df.attrs.get("chance"):
        return ""
    teacher, best = df[df["kind"] == "teacher"], best_student(df)
    parts, at = [], []
    if len(teacher):
        margins = chance_margins(df, teacher.iloc[0])
        clears = [t for t, m in margins.items() if m >= CLEAR_MARGIN]
        parts.append(f"the teacher clears the majority class by ≥ {CLEAR_MARGIN:.0f} points on {len(clears)} of {len(margins)} tasks")
        at.append(("teacher", [t for t, m in margins.items() if m <= 1e-6]))
    if best is not None:
        at.append(("best student", [t for t, m in chance_margins(df, best).items() if m <= 1e-6]))
    named = [f"{who} on {', '.join(ts)}" for who, ts in at if ts]
    parts.append(f"at chance: {'; '.join(named)}" if named else "no task at chance for the teacher or the best student")
    return "; ".join(parts)


def _seeds_phrase(row) -> str:
    seeds = [s for s in str(row.get("seeds") or "").split(",") if s]
    multi = sorted({_task_of(c) for c in score_columns() if pd.notna(row.get(c + "_std"))}, key=list(TASKS).index)
    if len(seeds) <= 1 or not multi:
        return f"1 fine-tuning seed ({seeds[0] if seeds else '?'})"
    single = [t for t in _task_scores(row, score_columns()) if t not in multi]
    return (f"{len(seeds)} fine-tuning seeds ({', '.join(seeds)}) on {', '.join(multi)}"
            + (f", 1 on {', '.join(single)}" if single else ""))


def headline(df: pd.DataFrame) -> str:
    """What a person reads first (a few lines, plain text; top of leaderboard.md and report.html):
    the best student's macro, % of teacher and its difference to the paper defaults with 95 %
    intervals and a verdict (better / not distinguishable / worse), its gain over each reference
    row (over mlm_only: the value of distillation), the seeds, how many tasks the teacher clears
    chance on and which tasks sit at chance, and how the intervals were made."""
    best = best_student(df)
    if best is None:
        return "No student has finished yet: nothing to rank."
    lines = []
    first = f"best student `{best['model']}`{' (paper defaults)' if is_paper_defaults(best) else ''}: macro {best['macro_score']:.2f}"
    extra = [f"{best['pct_teacher']:.1f} % of teacher{interval_text(best, 'pct_teacher', 1)}"] if pd.notna(best.get("pct_teacher")) else []
    if pd.notna(best.get("p_best")):
        extra.append(f"first in {100 * best['p_best']:.0f} % of resamples")
    first += f" ({'; '.join(extra)})" if extra else ""
    default = df[[is_paper_defaults(r) and r["kind"] == "student" for _, r in df.iterrows()]]
    if default.empty:
        first += "; no candidate ran the paper defaults (search.points_to_evaluate[0])"
    elif default.iloc[0]["status"] != "done":
        first += f"; the paper defaults `{default.iloc[0]['model']}` did not finish ({default.iloc[0]['status']})"
    elif default.iloc[0]["model"] == best["model"]:
        others = df[(df["kind"] == "student") & (df["status"] == "done") & df["macro_score"].notna() & (df["model"] != best["model"])]
        if others.empty:
            first += "; it is the only finished student"
        else:
            nxt = others.loc[others["macro_score"].idxmax()]
            d, lo, hi = -nxt["delta_vs_default"], -nxt.get("delta_vs_default_hi", math.nan), -nxt.get("delta_vs_default_lo", math.nan)
            ci = f" [{lo:.2f}, {hi:.2f}]" if pd.notna(lo) and pd.notna(hi) else ""
            first += f"; vs the next best `{nxt['model']}` {d:+.2f}{ci} — {_verdict(lo, hi)}"
    else:
        first += (f"; vs paper defaults {best['delta_vs_default']:+.2f}{interval_text(best, 'delta_vs_default')} — "
                  f"{_verdict(best.get('delta_vs_default_lo'), best.get('delta_vs_default_hi'))}")
    lines.append(first)
    gains = []
    for ref in sorted(reference_rows(df), key=lambda r: r != "mlm_only"):
        g = best.get(f"gain_over_{ref}")
        if pd.notna(g):
            what = " (the value of distillation)" if ref == "mlm_only" else ""
            gains.append(f"{ref}{what} {g:+.2f}{interval_text(best, f'gain_over_{ref}')}")
    if gains:
        lines.append("gain over " + "; over ".join(gains) + " macro points")
    lines.append(f"{_seeds_phrase(best)}" + (f"; {chance_summary(df)}" if chance_summary(df) else ""))
    boot = df.attrs.get("bootstrap") or {}
    if boot.get("rows"):
        lines.append(f"[lo, hi]: {100 * boot['level']:.0f} % {boot['method']}, {boot['resamples']} resamples, seed {boot['seed']}")
    else:
        lines.append("no intervals: no saved predictions to resample")
    return "\n".join(lines)


def conventions(df: pd.DataFrame) -> list[str]:
    """The notes printed under the leaderboard (markdown, html report): how to read its numbers."""
    subsets = sorted({s for v in df.get("subset_data", pd.Series(dtype=str)).dropna() for s in str(v).split()})
    profiled = any(c in df and df[c].notna().any() for c in PROFILE_COLUMNS)
    spread = any(c in df and df[c].notna().any() for c in LATENCY_SPREAD_COLUMNS)
    boot, chance = df.attrs.get("bootstrap") or {}, df.attrs.get("chance") or {}
    default = df[[is_paper_defaults(r) for _, r in df.iterrows()]]
    refs = [m for m in df.loc[df["kind"] == "reference", "model"].astype(str)]
    notes = [
        "Scores ×100 on GLUE validation splits; macro_score = mean of task scores (mnli = mean of its splits present).",
        *[f"{r}: {REFERENCE_NOTES.get(r, 'a reference row')}; gain_over_{r} = macro_score minus its macro_score (points)."
          for r in refs],
        INIT_NOTE if df["model"].astype(str).str.startswith(INIT_PREFIX).any() else "",
        "task-kd-<task>: task-specific distillation, scored on that task only (no macro_score)."
        if (df["kind"] == "task_distill").any() else "",
        f"paper defaults: candidate `{default.iloc[0]['model']}`, run with the spec's search.points_to_evaluate[0] "
        "(the paper's settings); delta_vs_default = macro_score minus its macro_score (points)." if len(default) else "",
        f"[lo, hi]: {100 * boot['level']:.0f} % interval, {boot['method']}: {boot['resamples']} resamples of each split's "
        f"examples (numpy default_rng([{boot['seed']}, split position]); the same examples for every model), every metric "
        "recomputed on each resample, seeds averaged within a resample, then tasks and macro as above; intervals of "
        "differences and ratios are paired (taken within each resample). p_best = share of resamples in which the "
        f"student has the highest macro of the {boot.get('students', 0)} done students with intervals (ties share)."
        if boot.get("rows") else "",
        ("No intervals for " + "; ".join(f"{m} ({why})" for m, why in sorted(boot.get("excluded", {}).items())) + ".")
        if boot.get("excluded") else "",
        "chance = the score of predicting the majority class of each split's validation sample (a constant scores 0 on "
        "stsb and on cola's MCC): " + ", ".join(f"{c} {v:.2f}" for c, v in chance.items())
        + f"; {CHANCE_MARK} marks a score at or below it." if chance else "",
        f"Seeds: {', '.join(sorted(set(df['seeds'].dropna()) - {''}))}; a score with a matching _std column is the mean "
        "over seeds (sample std in that column), the others come from the first seed." if "seeds" in df else "",
        f"Only available as subsets (task:split): {', '.join(subsets)}." if subsets else "",
        "size_mb: weight files on disk (1e6 bytes); latency_ms_b1/_b32: CPU forward pass of 128 tokens, "
        "1 torch thread, milliseconds per example at batch 1/32"
        + (" (median over timing rounds, [min, max] of the rounds' medians); the Pareto front treats two latencies "
           "as equal when these ranges overlap or the models have the same n_params (same architecture)." if spread else ".")
        if profiled else "",
        "status stopped/failed: the trial was stopped early (rung, proxy_score) or failed (reason); it has no GLUE scores."
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


def formatted(df: pd.DataFrame) -> pd.DataFrame:
    """The leaderboard as display strings (2 decimals, n_params in millions, empty for missing):
    the paper-default candidate's model shown as `<id> (paper defaults)`, each interval beside
    its value (`+1.20 [-0.40, 2.80]`), a latency's round spread likewise, a score at or below
    chance marked with †, and a `chance` row at the end; without the long seeds, subset_data and
    at_chance columns (summarised by `conventions`)."""
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
    hidden = {"subset_data", "seeds", "at_chance", "paper_defaults", *(x for p in pairs.values() for x in p)}
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
        row["macro_score"] = cell(macro_score(chance, df.attrs.get("include_wnli", True)), "macro_score")
        table = pd.concat([table, pd.DataFrame([row])], ignore_index=True)
    return table


def to_markdown(df: pd.DataFrame) -> str:
    """The headline, the leaderboard as a markdown table (chance row last) and its conventions as a bullet list."""
    table = formatted(df).to_markdown(index=False, disable_numparse=True)
    head = "\n".join(f"**{line}**  " if i == 0 else f"{line}  " for i, line in enumerate(headline(df).splitlines()))
    return head + "\n\n" + table + "\n\n" + "\n".join(f"- {n}" for n in conventions(df)) + "\n"
