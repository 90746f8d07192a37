"""The leaderboard as one typed object: the table and the sweep-wide facts read with it.

A `Board` is built once by distil.report.leaderboard.load from a results dir; distil.report.summary,
.html and .export only read it. Everything derived from the spec (the user's tasks, the ranking
metric, the paper-default candidate) is resolved there, once, and carried here.

Also here: the names of the columns derived from a macro (FAMILIES), the reference rows a row is
compared with (reference_rows, reference_map, init_rows: each of the row's own width, `widths`), and
the rule for retention over chance (CLEAR_MARGIN, cleared_tasks, retention_over_chance), which both the
builder and the readers need.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import pandas as pd

from distil.config.glue import TASKS
from distil.config.objectives import lower_is_better, sort_key
from distil.config.tasks import Task
from distil.evaluation.confidence import task_columns
from distil.evaluation.scores import SHAPE_COLUMNS, TASKS_MACRO, all_columns, macro_over
from distil.store.records import INIT_ONLY_PREFIX, PAPER_DEFAULTS, base_name, init_only_name, shape_key

# The two macros and the suffix of the columns derived from each (pct_teacher, gain_over_<ref>,
# gain_over_init, delta_vs_default): pct_teacher is on macro_score, pct_teacher_tasks on tasks_macro.
FAMILIES = {"macro_score": "", TASKS_MACRO: "_tasks"}
CLEAR_MARGIN = 5.0  # points above the majority class for "the teacher clears chance" on a task


@dataclass(frozen=True)
class Board:
    """A sweep's leaderboard (distil.report.leaderboard.load documents the columns of `frame`).

    frame: one row per model, sorted by `rank_by` (best first, empty scores last); empty when the
        results dir holds no row.
    tasks: the spec's own tasks, in declaration order.
    include_wnli: whether WNLI counts in macro_score; glue_tasks: the GLUE tasks the spec runs.
    rank_by: the column rows are ranked by and the best student is chosen on (always a column of a
        non-empty frame): the spec's first search.objectives, or a fallback (leaderboard.rank_metric).
    paper_defaults: model name of the row run with search.points_to_evaluate[0], the one
        delta_vs_default subtracts: the `paper_defaults` reference row, or (a sweep from before
        that row) the candidate that ran them (any status); None if neither exists.
    chance: {split column: majority-class score x100}; chance_rule: {own column: what that
        prediction is}.
    bootstrap: method, resamples, seed, level, rows (models with intervals), students, excluded
        ({model: why no interval}), paper_defaults (the done paper-default model or None),
        single_seed_tasks (tasks on which some row with intervals ran one fine-tuning seed: no seed
        noise in their intervals), rerun_rows ({model: distillation runs} of rows distilled more than once).
    retention: {macro: {"tasks": [the tasks retention_over_chance<sfx> averages], "left_out": {task:
        the teacher's margin over chance, points} }} for macro_score and tasks_macro ({} without a
        chance level): the tasks where the teacher clears chance by >= CLEAR_MARGIN and the others.
    resampled: {model: {split column: (B,) resampled scores}} of the rows with intervals ({} with
        resamples=0).
    comparison: teacher vs best student on each own task (JSON-ready dicts, teacher first per task;
        leaderboard._comparison).
    provenance: {field: {value: [models]}} over the rows' result.json "provenance".
    spec: spec.json as read ({} when missing or damaged).
    confirmation: the confirmation stage (distil.evaluation.confirmation.Confirmation.to_json(): each
        finalist's `confirm-<trial>` row against `confirm-paper_defaults` with simultaneous intervals, the
        A/A pair, the pooled SD between distillation runs); {} when the sweep has none.
    perplexity: with lm_eval, how the perplexity columns were made (leaderboard._add_perplexity: data,
        window, stride, articles, tokens, the bootstrap's method, resamples, seed and level, the teacher
        the ratios divide by, rows left without an interval and why); {} without lm_eval.
    """

    frame: pd.DataFrame
    tasks: tuple[Task, ...] = ()
    include_wnli: bool = True
    glue_tasks: tuple[str, ...] = tuple(TASKS)
    rank_by: str = "macro_score"
    paper_defaults: str | None = None
    chance: dict[str, float] = field(default_factory=dict)
    chance_rule: dict[str, str] = field(default_factory=dict)
    bootstrap: dict = field(default_factory=dict)
    resampled: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    comparison: tuple[dict, ...] = ()
    provenance: dict = field(default_factory=dict)
    retention: dict = field(default_factory=dict)
    spec: dict = field(default_factory=dict)
    confirmation: dict = field(default_factory=dict)
    perplexity: dict = field(default_factory=dict)

    @property
    def columns(self) -> list[str]:
        """Every split score column: GLUE's in GLUE order, then the own tasks'."""
        return all_columns(self.tasks)

    @property
    def column_tasks(self) -> dict[str, Task]:
        """Split column -> its Task (GLUE's and the own tasks')."""
        return task_columns(self.tasks)

    @property
    def latency_tokens(self) -> int:
        """The input length (tokens) the latency columns were timed at: the spec's profile.seq_len
        (128 for sweeps whose spec.json predates that section)."""
        return int((self.spec.get("profile") or {}).get("seq_len", 128))

    def is_paper_defaults(self, row) -> bool:
        """Whether a row (a frame row or a dict with "model") is a candidate that ran the paper
        defaults (an older sweep's, where they were the first trial), which tables mark
        `(paper defaults)`; the `paper_defaults` reference row says so by its name."""
        return (self.paper_defaults is not None and row.get("model") == self.paper_defaults
                and row.get("model") != PAPER_DEFAULTS)

    def teacher(self) -> pd.Series | None:
        """The teacher's row, or None."""
        rows = self.frame[self.frame["kind"] == "teacher"]
        return rows.iloc[0] if len(rows) else None

    @property
    def selection_objective(self) -> str:
        """The objective the search ranked candidates by (spec.json's first search.objectives, default
        macro_score): the `selection_score` column holds each candidate's value of it on held-out
        training rows."""
        return first_objective(self.spec)

    def best_student(self) -> pd.Series | None:
        """The row of the best done student, or None. Picked as the search picked it: by `selection_score`
        (the first objective on held-out training rows, best first, ties by trial id:
        distil.store.records.ResultsDir.by_selection, the ranking the janitor keeps weights by) when any
        done student has one, so the student whose validation scores are reported was not chosen on them
        and best_student/ exports a student whose weights were kept; otherwise (a sweep from before the
        selection split, hand-made rows) by `rank_by` (the highest; the lowest for a minimised objective
        such as perplexity: distil.config.objectives)."""
        df, metric = self.frame, self.rank_by
        done = df[(df["kind"] == "student") & (df["status"] == "done") & df[metric].notna()]
        if done.empty:
            return None
        if "selection_score" in done and done["selection_score"].notna().any():
            objective = self.selection_objective
            keys = sorted((sort_key(objective, v), m, i) for i, m, v in
                          zip(done.index, done["model"], done["selection_score"]))
            return done.loc[keys[0][2]]
        return done.loc[best_index(done[metric], metric)]

    def only(self, models) -> Board:
        """The same board over the rows of `models` only (e.g. the model card speaks of the exported
        student and the teacher): the table shrinks, the sweep-wide facts stay."""
        return replace(self, frame=self.frame[self.frame["model"].isin(list(models))])

    def metadata(self) -> dict:
        """The sweep-wide facts that leaderboard.parquet keeps (pandas stores them as the frame's
        attrs: `pd.read_parquet(...).attrs`): include_wnli, provenance, tasks (Task fields),
        glue_tasks, rank_by, chance, chance_rule, bootstrap, comparison, retention, confirmation."""
        return {"include_wnli": self.include_wnli, "provenance": self.provenance,
                "tasks": [asdict(t) for t in self.tasks], "glue_tasks": list(self.glue_tasks), "rank_by": self.rank_by,
                "chance": self.chance,
                "chance_rule": self.chance_rule, "bootstrap": self.bootstrap, "comparison": list(self.comparison),
                "retention": self.retention, "confirmation": self.confirmation,
                **({"perplexity": self.perplexity} if self.perplexity else {})}


def first_objective(spec: dict) -> str:
    """spec.json's (a dict's) first search.objectives: what the search ranked candidates by; macro_score when
    the spec names none (or is missing)."""
    return ((spec.get("search") or {}).get("objectives") or ["macro_score"])[0]


def best_index(values: pd.Series, metric: str):
    """The index of the best of `values` (no NaN) on `metric`: idxmin for a minimised objective, else idxmax
    (the first on a tie)."""
    return values.idxmin() if lower_is_better(metric) else values.idxmax()


def families(tasks) -> list[str]:
    """The macros a leaderboard has: macro_score always (empty without GLUE), tasks_macro with own tasks."""
    return ["macro_score"] + ([TASKS_MACRO] if tasks else [])


def widths(df: pd.DataFrame) -> dict[str, tuple | None]:
    """{model: its width (hidden_size, heads, ffn), or None at the teacher's width}: a row whose width
    columns are empty, or equal the teacher row's, has the teacher's width (a teacher-width sweep writes
    none; the leaderboard fills the teacher's in)."""
    cols = [c for c in SHAPE_COLUMNS if c in df]
    if len(cols) < len(SHAPE_COLUMNS):
        return {m: None for m in df["model"]}
    teacher = df.loc[df["kind"] == "teacher", cols]
    teacher_width = tuple(teacher.iloc[0]) if len(teacher) and teacher.iloc[0].notna().all() else None
    out = {}
    for m, *w in df[["model", *cols]].itertuples(index=False):
        w = tuple(w)
        out[m] = None if any(pd.isna(v) for v in w) or w == teacher_width else tuple(int(v) for v in w)
    return out


def shape_label(df: pd.DataFrame, row) -> str:
    """' [2L192H12F768]' (distil.store.records.shape_key) after a row's name in plots and the Pareto line when
    the rows of `df` are not all of one width (a narrower student's sweep), else '' (a teacher-width sweep's
    plots as before). A row at the teacher's width shows the teacher's shape."""
    width = widths(df)
    if all(w is None for w in width.values()) or pd.isna(row.get("n_layers")):
        return ""
    cols = [row.get(c) for c in SHAPE_COLUMNS]
    return f" [{shape_key(row['n_layers'], *cols)}]" if all(pd.notna(c) for c in cols) else ""


def pareto_rows(board: Board, cost: str = "latency_ms_b32") -> list[str]:
    """The models on the Pareto front of the ranking metric against `cost` (pareto_front: lower cost,
    higher score; two latencies within each other's timing spread, or one n_params, are one cost) among
    the teacher and the students, of every shape, best score first."""
    df, metric = board.frame, board.rank_by
    if metric not in df or cost not in df:
        return []
    done = df[df[metric].notna() & df["kind"].isin(["teacher", "student"])]
    num = lambda c: pd.to_numeric(done.get(c, pd.Series(np.nan, index=done.index)), errors="coerce")  # noqa: E731
    front = pareto_front(num(cost), num(metric), num(cost + "_min"), num(cost + "_max"), same=done["n_params"])
    return list(done.loc[front].sort_values(metric, ascending=False)["model"])


def pareto_front(cost, score, lo=None, hi=None, same=None) -> np.ndarray:
    """Boolean mask of the points no other point beats: none has cost <= and score >= with one
    of them strict. Lower cost and higher score are better; points with a NaN are never on it.

    Two costs count as equal (neither is lower) when their measured ranges [lo, hi] overlap
    (e.g. min and max of a latency's timing rounds: a difference inside the noise is no
    difference) or when the points share a `same` value (e.g. n_params: one architecture has
    one cost), so among such points only the best score is on the front. Without lo/hi a cost
    is its own range."""
    cost, score = np.asarray(cost, dtype=float), np.asarray(score, dtype=float)
    lo = cost if lo is None else np.where(np.isnan(np.asarray(lo, dtype=float)), cost, np.asarray(lo, dtype=float))
    hi = cost if hi is None else np.where(np.isnan(np.asarray(hi, dtype=float)), cost, np.asarray(hi, dtype=float))
    equal = (lo[:, None] <= hi[None, :]) & (lo[None, :] <= hi[:, None])  # [j, i]: j costs the same as i
    if same is not None:
        same = pd.Series(list(same))
        equal |= (same.to_numpy()[:, None] == same.to_numpy()[None, :]) & same.notna().to_numpy()[:, None]
    cheaper = (cost[:, None] < cost[None, :]) & ~equal  # [j, i]: j costs less than i
    valid = ~(np.isnan(cost) | np.isnan(score))
    front = np.zeros(len(cost), dtype=bool)
    for i in np.flatnonzero(valid):
        better = valid & (cheaper[:, i] | equal[:, i]) & (score >= score[i]) & (cheaper[:, i] | (score > score[i]))
        front[i] = not better.any()
    return front


def reference_rows(df: pd.DataFrame, metric: str = "macro_score") -> list[str]:
    """Names of the kinds of reference row with a `metric` (macro_score or tasks_macro) that every row is
    compared with (random_init, mlm_only, ...; not task-kd, not init_only-<rule>: see init_rows;
    not paper_defaults: delta_vs_default is that comparison), without their shape suffix: a row of
    another width than the teacher's (mlm_only-4L192H12F768) is of kind mlm_only (reference_map)."""
    if metric not in df:
        return []
    init_only = df["model"].astype(str).str.startswith(INIT_ONLY_PREFIX)
    refs = df[(df["kind"] == "reference") & df[metric].notna() & ~init_only & (df["model"] != PAPER_DEFAULTS)]
    return sorted({base_name(m) for m in refs["model"].astype(str)}, key=lambda m: (m != "random_init", m))


def reference_map(df: pd.DataFrame, base: str, metric: str = "macro_score") -> dict[str, str]:
    """{model: the reference row of kind `base` (reference_rows) and of the model's own width (widths)} for
    every row that has one with a `metric`: gain_over_<base> compares a row with the reference of its shape
    (at the teacher's width `base` itself, as always)."""
    width = widths(df)
    refs = df.loc[(df["kind"] == "reference") & df[metric].notna(), "model"].astype(str)
    by_width = {width[m]: m for m in refs if base_name(m) == base}
    return {m: by_width[w] for m, w in width.items() if w in by_width}


def init_rows(df: pd.DataFrame, metric: str = "macro_score") -> dict[str, str]:
    """{model: its init_only-<rule> row} for every row whose layer rule has an init_only row of its
    width (widths) with a `metric`: gain_over_init compares a student with the undistilled student of
    its own init and shape."""
    width = widths(df)
    inits = df.loc[df["model"].astype(str).str.startswith(INIT_ONLY_PREFIX) & df[metric].notna(), "model"]
    by_rule = {(base_name(m), width[m]): m for m in inits.astype(str)}
    out = {}
    for _, r in df.iterrows():
        name = by_rule.get((init_only_name(str(r.get("layer_selection"))), width[r["model"]]))
        if name is not None and r["model"] != name and r["kind"] in ("student", "reference"):
            out[r["model"]] = name
    return out


def family_tasks(metric: str, tasks, include_wnli: bool = True) -> list[Task]:
    """The tasks a macro averages: GLUE's (WNLI only with include_wnli) for macro_score, the spec's own
    `tasks` for tasks_macro."""
    if metric == TASKS_MACRO:
        return list(tasks)
    return [t for t in TASKS.values() if include_wnli or t.name != "wnli"]


def _scored(values: dict, task: Task) -> bool:
    """Whether `values` ({column: float or (B,) array}) has a score on one of `task`'s splits."""
    return any(c in values and not np.isnan(np.asarray(values[c], dtype=float)).all() for c in task.columns())


def cleared_tasks(teacher: dict, chance: dict, tasks) -> tuple[list[Task], dict[str, float]]:
    """(the `tasks` on which the teacher's task score clears the majority class by >= CLEAR_MARGIN
    points, {task: the teacher's margin over chance} of the others) over the tasks where both have a
    score. teacher: its split columns (a leaderboard row as a dict); chance: {column: chance score}.
    The same rule as the headline's count (distil.report.summary.chance_summary)."""
    kept, left_out = [], {}
    for task in tasks:
        if _scored(teacher, task) and _scored(chance, task):
            margin = macro_over(teacher, [task]) - macro_over(chance, [task])
            if margin >= CLEAR_MARGIN:
                kept.append(task)
            else:
                left_out[task.name] = float(margin)
    return kept, left_out


def retention_over_chance(row: dict, teacher: dict, chance: dict, tasks):
    """100 · (M(row) - M(chance)) / (M(teacher) - M(chance)), M the macro over `tasks` (each task the
    mean of its splits present, distil.evaluation.scores.macro_over): the share of the teacher's gain
    over the majority class that the row keeps (percent; 100 = the teacher's, 0 = chance). Values are
    floats (a row) or equal-shaped (B,) arrays (bootstrap resamples, paired). NaN when `tasks` is empty
    or the row lacks one of them. Pass the tasks of `cleared_tasks`, where the denominator is >= 5 points
    per task."""
    if not tasks or not all(_scored(row, t) for t in tasks):
        return math.nan
    base = macro_over(chance, tasks)
    return 100 * (macro_over(row, tasks) - base) / (macro_over(teacher, tasks) - base)
