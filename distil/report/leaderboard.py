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
column, best first: highest; perplexity, a causal teacher's objective, lowest first). How sure the
order is comes from distil.evaluation.confidence: paired multi-bootstrap intervals (validation examples
and fine-tuning seeds) of pct_teacher, retention_over_chance, the
gains over the reference rows and the difference to the paper-default candidate (on macro_score, and
with a `_tasks` suffix on tasks_macro), p_best, and each split's chance (majority-class) score, all
from the saved validation predictions. `load` returns a
distil.report.board.Board (the table and those sweep-wide facts); distil.report.summary says it
in words (`headline`, `to_markdown`, the teacher-vs-best-student comparison on each user task);
`write` writes the files.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from distil.config.glue import TASKS, score_columns
from distil.config.layers import layer_key
from distil.config.objectives import PERPLEXITY, lower_is_better
from distil.config.tasks import REGRESSION, Task
from distil.evaluation import confidence, confirmation
from distil.evaluation.perplexity import ArticleNLL, perplexity_interval, perplexity_ratio
from distil.evaluation.scores import (
    CAUSAL_CONFIG_COLUMNS, CONFIG_COLUMNS, LATENCY_SPREAD_COLUMNS, LAYER_TERM_COLUMNS, PROFILE_COLUMNS,
    SHAPE_COLUMNS, TASKS_MACRO, all_columns, macro_over, macro_score, own_tasks, row_from_result,
)
from distil.report import summary
from distil.report.board import (
    FAMILIES, Board, cleared_tasks, families, family_tasks, first_objective, init_rows, reference_map, reference_rows,
    retention_over_chance,
)
from distil.store.records import PAPER_DEFAULTS, ResultsDir, read_json

# The leaderboard name of a confirmation row: confirm-<trial id>, confirm-paper_defaults.
CONFIRM_ROW_PREFIX = "confirm-"


METHOD = "paired multi-bootstrap over validation examples and fine-tuning seeds"


def _unreadable(path: Path) -> bool:
    """Whether `path` exists but is not a JSON object."""
    try:
        return path.exists() and not isinstance(read_json(path), dict)
    except (OSError, ValueError):
        return True


def _corrupt(model: str, kind: str, path: Path, error: Exception) -> dict:
    """The row of a model whose files cannot be read: status `corrupt`, the reason in one line."""
    first = next((ln for ln in str(error).splitlines() if ln.strip()), type(error).__name__)
    reason = f"{path.name}: {type(error).__name__}: {first}"[:300]
    return {"model": model, "kind": kind, "status": "corrupt", "reason": reason}


def load(results_dir: str | Path, resamples: int = confidence.RESAMPLES, seed: int = confidence.SEED) -> Board:
    """Leaderboard of a sweep's results dir (finished or interrupted): a Board whose frame is
    sorted by the first objective (`rank_metric`); its frame is empty when the dir holds no row.

    Rows: `teacher`, one per candidate (the Tune trial id), and the reference rows `random_init`
    (the students' architecture with random weights, not distilled), any other
    `references/<name>/` row (e.g. `mlm_only`, `init_only`) and `task-kd-<task>` (task-specific
    distillation, scored on its task only: no macro_score).

    Columns: model, kind (teacher/student/reference/task_distill), status (done; incomplete for a
    trial with only config.json; the `status` of its status.json, e.g. stopped or failed, for a
    trial without result.json), alpha_ce, alpha_mlm, alpha_cos, alpha_mse, temperature,
    layer_selection, macro_score (GLUE; empty without GLUE tasks), pct_teacher (macro as % of
    the teacher's), retention_over_chance (the share of the teacher's macro gain over the majority
    class that the row keeps, %, on the tasks where the teacher clears chance by >= 5 points:
    board.retention_over_chance), gain_over_random_init and gain_over_<reference> (macro minus that
    reference row's, points), delta_vs_default (macro minus the paper-default candidate's, points); with
    the spec's own tasks, tasks_macro and the same five on it: pct_teacher_tasks,
    retention_over_chance_tasks, gain_over_<reference>_tasks, gain_over_init_tasks,
    delta_vs_default_tasks; each of these with a 95 % interval in `<col>_lo` / `<col>_hi`, p_best
    (share of bootstrap resamples in which the student has the highest score of the done students
    with intervals, on the ranking metric; empty when fewer than 2 have intervals), one column per
    GLUE split (cola ... wnli, mnli_m and mnli_mm), then one per split of each own task
    (`<task><suffix>`), retention_<task> (retention over chance on that task alone, empty where the
    teacher does not clear chance by >= 5 points), <col>_std with several seeds, n_params (encoder
    parameters), size_mb (weight files on disk, MB = 1e6 bytes), latency_ms_b1 / latency_ms_b32 (CPU forward
    pass at the spec's profile.seq_len tokens, default 128, milliseconds per example at batch 1 / 32;
    see distil.evaluation.profile) with the
    spread over timing rounds in latency_ms_b1_min/_max and latency_ms_b32_min/_max,
    distill_loss, finetune_seconds (fine-tuning + evaluation, seconds summed over tasks and
    seeds), finetune_seconds_<task> per own task (one run, mean over seeds), trial_index (0, 1,
    ... in order of trial start, from config.json's `started`; empty for the teacher),
    with lm_eval (a causal teacher): alpha_clm, perplexity (WikiText test, per GPT-2 token) with its 95 %
    bootstrap interval over articles in perplexity_lo / perplexity_hi, and ppl_vs_teacher (the row's
    perplexity over the teacher's, 1 = the teacher, above 1 worse) and ppl_vs_default (over the paper
    defaults' row: below 1, better than the paper defaults), each with its paired interval (_add_perplexity);
    paper_defaults (True on the row run with search.points_to_evaluate[0]: the `paper_defaults`
    reference row, or in a sweep from before that row the candidate that ran them), seeds,
    subset_data (splits only available as subsets), at_chance (split columns where the row
    scores at or below the majority-class score), and, when status.json files exist, rung,
    proxy_score and reason, and on finished candidates selection_score (the first search objective on
    held-out training rows, from result.json "objectives": what the search, the janitor and
    Board.best_student rank candidates by). Columns a result file lacks (e.g. profiles of an older sweep,
    predictions for intervals) are empty.

    The sweep-wide facts are the Board's fields (leaderboard.parquet keeps them as its frame's
    attrs, Board.metadata): chance, chance_rule, bootstrap, provenance, include_wnli, tasks,
    glue_tasks, rank_by, paper_defaults, comparison (teacher vs best student on each own task),
    retention (the tasks retention_over_chance averages and those it leaves out), and the bootstrap's
    resampled scores. `resamples`/`seed`: the paired bootstrap's
    (distil.evaluation.confidence); resamples=0 skips the intervals.
    """
    # The files are read as the dicts they hold (row_from_result's input), through records' paths; a
    # record's to_json() would drop the keys an older file has as null, and change the table.
    results = ResultsDir(results_dir)
    spec = results.read_spec() or {}  # missing or damaged: GLUE's defaults
    include_wnli = spec.get("glue", {}).get("include_wnli", True)
    own = own_tasks(spec)
    wanted = spec.get("glue", {}).get("tasks", "all")
    glue_run = list(TASKS) if wanted == "all" else [t for t in TASKS if t in wanted]
    rows, row_dirs, provenance, lm = [], {}, [], {}  # lm: model -> its result.json "lm" (lm_eval)
    for ref in [results.teacher(), *results.references()]:
        if ref.has_result():
            try:
                result = read_json(ref.result_file)
                row = row_from_result(result, include_wnli, own)
            except Exception as e:  # a damaged file makes its own row corrupt, never the report
                rows.append(_corrupt(ref.name, ref.kind, ref.result_file, e))
                continue
            if ref.kind == "teacher":
                row |= _teacher_shape(result)
            rows.append({"model": ref.name, "kind": result.get("kind", "teacher"), "status": "done", **row})
            row_dirs[ref.name] = ref.path
            if result.get("lm"):
                lm[ref.name] = result["lm"]
            provenance.append((ref.name, result.get("provenance")))
    plan = results.read_confirmation_plan()  # None: a dir from before the plan file; every row counts
    for row_dir in results.confirmations():
        if plan is not None and row_dir.name not in [PAPER_DEFAULTS, *plan.get("finalists", [])]:
            continue  # a row of an earlier plan (other finalists or top_k): not part of this claim
        model = CONFIRM_ROW_PREFIX + row_dir.name
        try:
            result = read_json(row_dir.result_file)
            row = row_from_result(result, include_wnli, own)
        except Exception as e:
            rows.append(_corrupt(model, "confirmation", row_dir.result_file, e))
            continue
        rows.append({"model": model, "kind": "confirmation", "status": "done", **row})
        row_dirs[model] = row_dir.path
        provenance.append((model, result.get("provenance")))
    started, candidates = {}, {}
    selection_objective = first_objective(spec)
    for cand in results.candidates():
        try:
            config = read_json(cand.config_file) if cand.has_config() else None
            status = read_json(cand.status_file) if cand.has_status() else {}
            result = read_json(cand.result_file) if cand.has_result() else None
            row = row_from_result(result, include_wnli, own) if result is not None else None
        except Exception as e:
            files = (cand.result_file, cand.config_file, cand.status_file)
            rows.append(_corrupt(cand.name, "student", next((f for f in files if _unreadable(f)), cand.result_file), e))
            continue
        extra = {k: status[k] for k in ("rung", "proxy_score", "reason") if k in status}
        if config:
            started[cand.name] = config.get("started", math.nan)
        if result is not None:
            selection = (result.get("objectives") or {}).get(selection_objective)
            rows.append({"model": cand.name, "kind": "student", "status": "done", **row, **extra,
                         "selection_score": math.nan if selection is None else selection})
            row_dirs[cand.name] = cand.path
            if result.get("lm"):
                lm[cand.name] = result["lm"]
            provenance.append((cand.name, result.get("provenance")))
        elif config or status:
            result = {}
            params = (config or {}).get("params", {})
            rows.append({"model": cand.name, "kind": "student", "status": status.get("status", "incomplete"),
                         **{k: params.get(k) for k in CONFIG_COLUMNS},
                         **{c: params[k] for c, k in SHAPE_COLUMNS.items() if k in params},
                         **{k: params[k] for k in LAYER_TERM_COLUMNS if k in params}, **extra})
        else:
            continue
        candidates[cand.name] = {"params": result.get("params") or (config or {}).get("params", {}),
                                 "done": bool(result), "label": (config or {}).get("label"),
                                 "started": (config or {}).get("started")}
    df = pd.DataFrame(rows)
    if df.empty:
        return Board(df, spec=spec)
    for c in _order(own):  # keep every column, e.g. an empty mnli_mm offline
        if c not in df.columns:
            df[c] = math.nan
    _fill_teacher_width(df)
    for c in (c for c in LAYER_TERM_COLUMNS if c in df.columns):  # a distilled row's params omit a term that is 0
        df.loc[df[c].isna() & df["alpha_ce"].notna(), c] = 0.0
    order = pd.Series(started, dtype=float).rank(method="first") - 1  # 0 = the first trial started
    df["trial_index"] = df["model"].map(order).astype("Int64")
    own_row = (df["model"] == PAPER_DEFAULTS) & (df["kind"] == "reference")
    paper_defaults = PAPER_DEFAULTS if own_row.any() else paper_default_model(candidates, spec)
    df["paper_defaults"] = df["model"] == paper_defaults
    for metric in families(own):
        _add_relative(df, metric)
    rank_by = rank_metric(df, spec)
    done = {m: d for m, d in row_dirs.items() if m in set(df.loc[df["status"] == "done", "model"])}
    resampled, chance, chance_rule, bootstrap, chance_resampled, kept = _add_confidence(
        df, done, own, include_wnli, rank_by, resamples, seed)
    confirmation = _add_confirmation(df, kept, _macro_of(rank_by, own, include_wnli), rank_by, resamples, seed)
    retention = _add_retention(df, own, include_wnli, chance, resampled, chance_resampled)
    comparison = _comparison(df, own, resampled)
    perplexity = _add_perplexity(df, lm, paper_defaults, resamples, seed)
    df = df[_columns(df, own)].sort_values(rank_by, ascending=lower_is_better(rank_by),
                                           na_position="last").reset_index(drop=True)
    return Board(df, tasks=tuple(own), include_wnli=include_wnli, glue_tasks=tuple(glue_run), rank_by=rank_by,
                 paper_defaults=paper_defaults, chance=chance, chance_rule=chance_rule, bootstrap=bootstrap,
                 resampled=resampled, comparison=tuple(comparison), provenance=_provenance(provenance), spec=spec,
                 retention=retention, confirmation=confirmation, perplexity=perplexity)


PERPLEXITY_METHOD = "percentile bootstrap over articles (paired: the same article draws for every row)"


def _add_perplexity(df: pd.DataFrame, lm: dict[str, dict], paper_defaults: str | None, resamples: int,
                    seed: int) -> dict:
    """With lm_eval (rows whose result.json has "lm"): add perplexity_lo/_hi (percentile bootstrap over the
    WikiText articles: distil.evaluation.perplexity.perplexity_interval) and ppl_vs_teacher with
    ppl_vs_teacher_lo/_hi (the row's perplexity over the teacher's and its paired interval:
    perplexity_ratio; 1 is the teacher, above 1 worse) to df (in place; `perplexity` itself is
    row_from_result's), and ppl_vs_default with its interval likewise over the paper defaults' row (a
    perplexity sweep's delta_vs_default: below 1, better than the paper defaults). A row scored on other
    articles or tokens than the teacher (another lm_eval, or a tokenizer) gets no ratio; resamples=0 gives
    no intervals. Returns Board.perplexity ({} without lm)."""
    if not lm:
        return {}
    records = {m: ArticleNLL.from_json(d) for m, d in lm.items()}
    teacher = next((m for m in df.loc[df["kind"] == "teacher", "model"] if m in records), None)
    default = paper_defaults if paper_defaults in records else None
    ratios = {"ppl_vs_teacher": teacher, "ppl_vs_default": default}
    cols = {c: {} for c in ("perplexity_lo", "perplexity_hi", *(r + s for r in ratios for s in ("", "_lo", "_hi")))}
    excluded = {}
    for m, r in records.items():
        if resamples > 0:
            cols["perplexity_lo"][m], cols["perplexity_hi"][m] = perplexity_interval(r, resamples, seed)
        for column, ref in ratios.items():
            if ref is None:
                continue
            try:
                ratio, lo, hi = perplexity_ratio(r, records[ref], max(resamples, 1), seed)
            except ValueError as e:
                excluded[m] = str(e).splitlines()[0]
                continue
            cols[column][m] = ratio
            if resamples > 0:
                cols[column + "_lo"][m], cols[column + "_hi"][m] = lo, hi
    for c, values in cols.items():
        df[c] = df["model"].map(values).astype(float)
    first = records[teacher] if teacher else next(iter(records.values()))
    info = lm[teacher] if teacher else next(iter(lm.values()))
    return {"method": PERPLEXITY_METHOD, "resamples": resamples, "seed": seed, "level": confidence.LEVEL,
            "data": info.get("data"), "window": first.window, "stride": first.stride, "articles": len(first.titles),
            "tokens": int(first.tokens.sum()), "teacher": teacher, "paper_defaults": default, "excluded": excluded}


def _teacher_shape(result: dict) -> dict:
    """The teacher row's shape columns (n_layers and SHAPE_COLUMNS) from the config.json of its model
    (result params `model`: a local dir); {} where it cannot be read (a hub id, a dir moved since)."""
    try:
        config = read_json(Path(str(result.get("params", {}).get("model"))) / "config.json")
    except (OSError, ValueError, TypeError):
        return {}
    keys = {"n_layers": "num_hidden_layers", **SHAPE_COLUMNS}
    return {c: config[k] for c, k in keys.items() if isinstance(config.get(k), int)}


def _fill_teacher_width(df: pd.DataFrame) -> None:
    """Rows without a width (written at the teacher's: their params name none) get the teacher row's, in
    place, so that the shape columns read alike for every row of the Pareto front."""
    teacher = df.loc[df["kind"] == "teacher", list(SHAPE_COLUMNS)]
    if not len(teacher) or teacher.iloc[0].isna().any():
        return
    bare = df[list(SHAPE_COLUMNS)].isna().all(axis=1) & (df["kind"] != "teacher") & (df["status"] != "corrupt")
    for c in SHAPE_COLUMNS:
        df.loc[bare, c] = teacher.iloc[0][c]


def rank_metric(df: pd.DataFrame, spec: dict) -> str:
    """The column rows are ranked by (and the best student chosen on): spec.json's first
    search.objectives when the leaderboard has it with a value, else macro_score, else
    tasks_macro (an older sweep's spec, or one whose scores are all missing)."""
    first = first_objective(spec)
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
    value_of = df.set_index("model")[metric]
    for ref in reference_rows(df, metric):  # each row against the reference row of its own width
        refs = reference_map(df, ref, metric)
        df[f"gain_over_{ref}{sfx}"] = [r[metric] - value_of[refs[r["model"]]] if r["model"] in refs else math.nan
                                       for _, r in df.iterrows()]
    inits = init_rows(df, metric)
    df["gain_over_init" + sfx] = [r[metric] - value_of[inits[r["model"]]] if r["model"] in inits else math.nan
                                  for _, r in df.iterrows()]
    default = df.loc[df["paper_defaults"] & (df["status"] == "done"), metric]
    if len(default):
        df["delta_vs_default" + sfx] = df[metric] - default.iloc[0]


def _order(tasks=()) -> list[str]:
    tasks_block = ([TASKS_MACRO, "pct_teacher_tasks", "retention_over_chance_tasks", "gain_over_random_init_tasks",
                    "delta_vs_default_tasks"] if tasks else [])
    return ["model", "kind", "status", *CONFIG_COLUMNS, "macro_score", "pct_teacher", "retention_over_chance",
            "gain_over_random_init", "delta_vs_default", *tasks_block, "p_best", "selection_score", *all_columns(tasks),
            *(f"retention_{t.name}" for t in [*TASKS.values(), *tasks]), *SHAPE_COLUMNS, "n_params", *PROFILE_COLUMNS,
            *LATENCY_SPREAD_COLUMNS, "distill_loss", "finetune_seconds", *(f"finetune_seconds_{t.name}" for t in tasks),
            "trial_index", "paper_defaults"]


def _columns(df: pd.DataFrame, tasks=()) -> list[str]:
    """_order(), the layer-wise terms' weights after alpha_mse when a row has them, each gain_over_<reference>
    of a macro after its gain_over_random_init, every interval column (`_lo`, `_hi`) right after its column,
    then the rest (seeds, subset_data, at_chance, _std)."""
    base = _order(tasks)
    at = base.index("alpha_mse") + 1
    base[at:at] = [c for c in LAYER_TERM_COLUMNS if c in df.columns]
    for metric in families(tasks):
        sfx = FAMILIES[metric]
        anchor = f"gain_over_random_init{sfx}"
        others = sorted(c for c in df.columns if c.startswith("gain_over_") and c != anchor and c.endswith(sfx)
                        and not c.endswith(("_lo", "_hi")) and (sfx or not c.endswith("_tasks")))
        at = base.index(anchor) + 1
        base[at:at] = others
    # A causal sweep's columns (absent from a masked-LM sweep's board): its LM weight, its perplexity.
    present = [c for c in CAUSAL_CONFIG_COLUMNS if c in df.columns]
    base[base.index("alpha_mlm") + 1:base.index("alpha_mlm") + 1] = present
    if PERPLEXITY in df.columns:
        base[base.index("macro_score"):base.index("macro_score")] = [PERPLEXITY, "ppl_vs_teacher", "ppl_vs_default"]
    out = []
    for c in base:
        out += [c] + [c + s for s in ("_lo", "_hi") if c + s in df.columns]
    return out + [c for c in df.columns if c not in out]


def paper_default_model(candidates: dict[str, dict], spec: dict) -> str | None:
    """The candidate run with the paper's defaults, or None: how a sweep from before the
    `paper_defaults` reference row (which ran them as its first trial) finds them.

    candidates: trial id -> {"params", "label", "done", "started"} (from config.json/result.json),
    in any order. A candidate whose config.json says `"label": "paper defaults"` (the sweep marks
    the trial it starts with search.points_to_evaluate[0]) is it; results without labels are
    matched on their params against spec.json's points_to_evaluate[0] and fixed search values
    (numbers with isclose, the layer selection by its canonical key). Several: the done one that
    started first."""
    search = spec.get("search", {})
    points = search.get("points_to_evaluate") or []
    fixed = {k: v for k, v in search.items() if k in CONFIG_COLUMNS and not isinstance(v, dict)}
    point = {**fixed, **(points[0] if points else {})}
    point = {k: layer_key(v) if k == "layer_selection" else v for k, v in point.items()}

    def same(params: dict) -> bool:
        for k, v in point.items():
            got = params.get(k)
            if got is None and k not in points[0]:
                continue  # a fixed value the params do not record
            if got is None:
                return False
            if not (math.isclose(float(got), float(v)) if isinstance(v, (int, float)) else str(got) == str(v)):
                return False
        return True

    labelled = [m for m, c in candidates.items() if c.get("label") == "paper defaults"]
    matches = labelled or ([m for m, c in candidates.items() if same(c.get("params") or {})] if points else [])
    def done_then_first(m: str) -> tuple:
        return not candidates[m].get("done"), candidates[m].get("started") or math.inf

    return min(matches, key=done_then_first) if matches else None


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


# The majority-class prediction, resampled beside the rows (paired) for retention_over_chance's interval.
_CHANCE_ROW = "chance (majority class)"


def _add_confidence(df: pd.DataFrame, row_dirs: dict[str, Path], tasks: list[Task], include_wnli: bool, rank_by: str,
                    resamples: int, seed: int) -> tuple[dict[str, dict[str, np.ndarray]], dict, dict, dict, dict]:
    """Add the interval columns, p_best (on `rank_by`, with at least 2 students with intervals) and
    at_chance to df (in place). Rows whose predictions are missing, or do not reproduce the scores in
    their result.json (within 0.01 points), get no intervals; bootstrap["excluded"] says why. Returns
    (the resampled split scores {model: {column: (B,)}} of the rows with intervals, {} with
    resamples=0; chance; chance_rule; bootstrap), the Board's fields of those names, and the
    majority-class prediction's resampled split scores {column: (B,)} on the same example draws."""
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

    def constant(s: confidence.Split) -> np.ndarray:  # (1, N) or (1, N, L): one "seed", no seed noise
        return confidence.constant_prediction(s.labels, s.task.problem_type == REGRESSION)[None]

    kept = {c: confidence.Split(s.column, s.idx, s.labels,
                                {**{m: p for m, p in s.preds.items() if m not in excluded}, _CHANCE_ROW: constant(s)},
                                s.task, s.position, {m: r for m, r in s.runs.items() if m not in excluded})
            for c, s in splits.items()}
    resampled, values, chance_resampled = {}, {}, {}  # values: metric -> {model: (B,) resampled metric}
    if resamples > 0:
        resampled = {m: v for m, v in confidence.resampled_columns(kept, resamples, seed).items() if m not in excluded}
        chance_resampled = resampled.pop(_CHANCE_ROW, {})
        of = {"macro_score": lambda cols: macro_score(cols, include_wnli),
              TASKS_MACRO: lambda cols: macro_over(cols, tasks)}
        for metric in {*families(tasks), rank_by}:
            get = of.get(metric, lambda cols, c=metric: cols.get(c, math.nan))  # a single split column
            values[metric] = {m: v for m, cols in resampled.items() if isinstance(v := get(cols), np.ndarray)
                              and pd.notna(by_model.at[m, metric])}

    def fill(column: str, ref: str | dict[str, str] | None, how: str, metric: str) -> None:
        """Intervals of `column`: each row against `ref` (a model, or {model: its own reference})."""
        df[column + "_lo"] = df[column + "_hi"] = math.nan  # the same columns with or without predictions
        got = values.get(metric, {})
        refs = ref if isinstance(ref, dict) else {m: ref for m in got}
        bounds = {m: confidence.paired_interval(v, got[refs[m]], how) for m, v in got.items()
                  if refs.get(m) in got}
        if not bounds:
            return
        df[column + "_lo"] = df["model"].map({m: b[0] for m, b in bounds.items()})
        df[column + "_hi"] = df["model"].map({m: b[1] for m, b in bounds.items()})

    teacher = df.loc[df["kind"] == "teacher", "model"]
    default = df.loc[df["paper_defaults"] & (df["status"] == "done"), "model"]
    for metric in families(tasks):
        sfx, got = FAMILIES[metric], values.get(metric, {})
        fill("pct_teacher" + sfx, teacher.iloc[0] if len(teacher) else None, "percent", metric)
        for ref in reference_rows(df, metric):
            fill(f"gain_over_{ref}{sfx}", reference_map(df, ref, metric), "difference", metric)
        fill("delta_vs_default" + sfx, default.iloc[0] if len(default) else None, "difference", metric)
        # gain_over_init: each row against the init_only row of its own layer rule.
        bounds = {m: confidence.paired_interval(got[m], got[ref], "difference")
                  for m, ref in init_rows(df, metric).items() if m in got and ref in got}
        df["gain_over_init" + sfx + "_lo"] = df["model"].map({m: b[0] for m, b in bounds.items()})
        df["gain_over_init" + sfx + "_hi"] = df["model"].map({m: b[1] for m, b in bounds.items()})
    ranked = values.get(rank_by, {})
    students = [m for m in df.loc[df["kind"] == "student", "model"] if m in ranked]
    if len(students) >= 2:  # with one, "first in 100 % of resamples" would say nothing
        p_best = confidence.p_best(np.stack([ranked[m] for m in students], 1))
        df["p_best"] = df["model"].map(dict(zip(students, p_best)))
    df["at_chance"] = [" ".join(c for c in columns if c in chance and pd.notna(r[c]) and r[c] <= chance[c] + 1e-6)
                       for _, r in df.iterrows()]
    own = set(all_columns(tasks)) - set(score_columns())
    chance_rule = {c: confidence.chance_rule(splits[c]) for c in columns if c in own and c in splits}
    rows = sorted({m for v in values.values() for m in v})
    single = {s.task.name for s in kept.values() for m in rows if m in s.preds and len(s.preds[m]) == 1}
    reruns: dict[str, int] = {}  # model -> its distillation runs (the most on any split)
    for s in kept.values():
        for m in rows:
            if m in s.preds:
                reruns[m] = max(reruns.get(m, 1), len(np.unique(s.runs_of(m))))
    bootstrap = {
        "method": METHOD, "resamples": resamples, "seed": seed, "level": confidence.LEVEL, "rows": rows,
        "students": len(students), "excluded": excluded, "paper_defaults": default.iloc[0] if len(default) else None,
        "single_seed_tasks": [t for t in dict.fromkeys(task.name for task in confidence.task_columns(tasks).values())
                              if t in single],
        "rerun_rows": {m: r for m, r in sorted(reruns.items()) if r > 1},
    }
    return resampled, chance, chance_rule, bootstrap, chance_resampled, kept


def _macro_of(metric: str, tasks: list[Task], include_wnli: bool):
    """The function that turns {split column: score} into `metric`: a macro, or one split column."""
    if metric == "macro_score":
        return lambda cols: macro_score(cols, include_wnli)
    if metric == TASKS_MACRO:
        return lambda cols: macro_over(cols, tasks)
    return lambda cols: cols.get(metric, math.nan)


def _add_confirmation(df: pd.DataFrame, splits: dict, macro, metric: str, resamples: int, seed: int) -> dict:
    """The confirmation stage's comparisons (distil.evaluation.confirmation) on `metric`: each finalist's
    `confirm-<trial>` row against `confirm-paper_defaults`, with simultaneous intervals over the finalists,
    and the paper defaults' A/A pair; sets delta_vs_default (and _lo/_hi) of the confirmation rows to
    these (in place: their difference to the confirmed paper defaults, not to the search's row).
    Returns Confirmation.to_json(), or {} without a confirmed paper-defaults row with intervals."""
    base = CONFIRM_ROW_PREFIX + PAPER_DEFAULTS
    rows = [m for m in df.loc[(df["kind"] == "confirmation") & (df["status"] == "done"), "model"]
            if any(m in s.preds for s in splits.values())]
    if resamples <= 0 or base not in rows:
        return {}
    finalists = {m: str(m)[len(CONFIRM_ROW_PREFIX):] for m in rows if m != base}
    result = confirmation.from_splits(splits, base, finalists, macro, metric, resamples, seed)
    if result is None:
        return {}
    sfx = FAMILIES.get(metric)
    if sfx is not None:
        column = "delta_vs_default" + sfx
        for c in result.comparisons:
            at = df["model"] == c.model
            df.loc[at, column], df.loc[at, column + "_lo"], df.loc[at, column + "_hi"] = c.delta, c.lo, c.hi
        at = df["model"] == base
        df.loc[at, column], df.loc[at, column + "_lo"], df.loc[at, column + "_hi"] = 0.0, math.nan, math.nan
    return result.to_json()


def _add_retention(df: pd.DataFrame, tasks: list[Task], include_wnli: bool, chance: dict, resampled: dict,
                   chance_resampled: dict) -> dict:
    """Add retention_over_chance (and _tasks), with its interval, and retention_<task> to df (in
    place); returns Board.retention. Per macro: the tasks where the teacher clears the majority class
    by >= 5 points (board.cleared_tasks, on the full-sample scores); a row's value is
    board.retention_over_chance over them (percent), its interval the percentiles of the same ratio
    taken within each resample (row, teacher and the majority-class prediction on the same drawn
    examples; the row's and the teacher's seeds drawn as in every interval). Empty without a teacher
    or a chance level, or for a row without a score on one of those tasks."""
    teacher = df[df["kind"] == "teacher"]
    t_row = teacher.iloc[0].to_dict() if len(teacher) else {}
    t_name = t_row.get("model")
    out = {}
    for metric in families(tasks):
        column = "retention_over_chance" + FAMILIES[metric]
        df[column] = df[column + "_lo"] = df[column + "_hi"] = math.nan
        if not t_row or not chance:
            continue
        pool = family_tasks(metric, tasks, include_wnli)
        kept, left_out = cleared_tasks(t_row, chance, pool)
        out[metric] = {"tasks": [t.name for t in kept], "left_out": left_out}
        rows = [r.to_dict() for _, r in df.iterrows()]
        for task in kept:
            df[f"retention_{task.name}"] = [retention_over_chance(r, t_row, chance, [task]) for r in rows]
        df[column] = [retention_over_chance(r, t_row, chance, kept) for r in rows]
        if t_name not in resampled or not chance_resampled or not kept:
            continue
        bounds = {}
        for model, cols in resampled.items():
            values = retention_over_chance(cols, resampled[t_name], chance_resampled, kept)
            if isinstance(values, np.ndarray) and pd.notna(df.loc[df["model"] == model, column]).any():
                bounds[model] = confidence.interval(values)
        df[column + "_lo"] = df["model"].map({m: b[0] for m, b in bounds.items()})
        df[column + "_hi"] = df["model"].map({m: b[1] for m, b in bounds.items()})
    return out


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
        def score(r, cols=cols):
            return np.nanmean([r[c] for c in cols]) if any(pd.notna(r[c]) for c in cols) else math.nan

        def resampled_score(m, task=task):
            return macro_over(resampled.get(m, {}), [task])

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
                     "finetune_seconds": num(row.get(f"finetune_seconds_{task.name}")),
                     "n_params": num(row.get("n_params")),
                     **{k: num(row.get(k)) for k in ("latency_ms_b1", "latency_ms_b32")}}
            a, b = resampled_score(entry["model"]), resampled_score(str(t["model"])) if t is not None else math.nan
            if isinstance(a, np.ndarray) and isinstance(b, np.ndarray):
                entry["pct_teacher_lo"], entry["pct_teacher_hi"] = confidence.paired_interval(a, b, "percent")
            for key, name in (("latency_ms_b1", "speedup_b1"), ("latency_ms_b32", "speedup_b32"),
                              ("finetune_seconds", "finetune_speedup"), ("n_params", "params_ratio")):
                field = key if key != "finetune_seconds" else f"finetune_seconds_{task.name}"
                theirs = num(t.get(field)) if t is not None else None
                entry[name] = theirs / entry[key] if theirs and entry[key] else None
            out.append(entry)
    return out


def write(board: Board, results_dir: str | Path) -> None:
    """Write leaderboard.csv and leaderboard.parquet (full precision; the parquet keeps
    Board.metadata() as its frame's attrs) and leaderboard.md (summary.to_markdown: headline,
    rounded table, chance row, notes)."""
    results_dir = Path(results_dir)
    board.frame.to_csv(results_dir / "leaderboard.csv", index=False)
    frame = board.frame.copy()
    frame.attrs = board.metadata()  # what a user gets back from pd.read_parquet(...).attrs
    frame.to_parquet(results_dir / "leaderboard.parquet", index=False)
    (results_dir / "leaderboard.md").write_text(summary.to_markdown(board))
