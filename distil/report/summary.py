"""The leaderboard in words: the headline a person reads first, the notes that say how to read
the numbers, the display table (2 decimals, intervals beside their values, chance marks) and the
teacher-vs-best-student comparison on each user task. distil.report.leaderboard builds the Board
(distil.report.board); this module only reads it."""

from __future__ import annotations

import math
import os

import numpy as np
import pandas as pd

from distil.config.glue import TASKS, score_columns
from distil.config.tasks import MULTI, Task
from distil.evaluation import confidence
from distil.evaluation.scores import (LATENCY_SPREAD_COLUMNS, PROFILE_COLUMNS, SHAPE_COLUMNS, TASKS_MACRO, macro_over,
                                     macro_score)
from distil.config.objectives import PERPLEXITY
from distil.report.board import (CLEAR_MARGIN, FAMILIES, Board, best_index, pareto_rows, reference_rows, shape_label,
                                 widths)
from distil.store.records import INIT_ONLY_PREFIX, PAPER_DEFAULTS

REFERENCE_NOTES = {
    "random_init": "the students' architecture with random weights, no distillation",
    "mlm_only": "the students' architecture trained from random weights with the MLM loss alone on the same "
                "token budget, no teacher: the gain over it is the value of distillation",
    "clm_only": "the students' architecture trained from random weights with the causal LM loss alone on the same "
                "token budget, no teacher: its perplexity against the students' is the value of distillation",
    "init_only": "the student initialised from the teacher's layers, not distilled",
}
INIT_NOTE = ("init_only-<rule>: the candidates' architecture initialised from the teacher's layers by <rule>, with no "
             "distillation step; gain_over_init = macro_score minus the macro_score of the init_only row of the row's "
             "own layer rule (points): what the distillation steps added to the copied layers.")
CHANCE_MARK = "†"


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


def chance_margins(board: Board, row: pd.Series) -> dict[str, float]:
    """{task: the row's task score minus the majority-class score} over the GLUE tasks in the
    macro (WNLI only with include_wnli) and the own tasks that have both; empty without a chance
    level (board.chance)."""
    chance, tasks = board.chance, board.column_tasks
    level, scores = _task_scores(chance, list(chance), tasks), _task_scores(row, list(chance), tasks)

    def keep(t: str) -> bool:
        return t in scores and (t != "wnli" or board.include_wnli)

    return {t: scores[t] - level[t] for t in level if keep(t)}


def chance_summary(board: Board) -> str:
    """'the teacher clears the majority class by >= 5 points on k of n tasks (own task +margin,
    ...); at chance: ...' (tasks in the macros); empty without a chance level (no saved predictions)."""
    if not board.chance:
        return ""
    teacher, best = board.teacher(), board.best_student()
    parts, at = [], []
    own = [t.name for t in board.tasks]
    if teacher is not None:
        margins = chance_margins(board, teacher)
        clears = [t for t, m in margins.items() if m >= CLEAR_MARGIN]
        named = ", ".join(f"{t} {margins[t]:+.1f}" for t in own if t in margins)
        parts.append(f"the teacher clears the majority class by ≥ {CLEAR_MARGIN:.0f} points on {len(clears)} of "
                     f"{len(margins)} tasks" + (f" ({named})" if named else ""))
        at.append(("teacher", [t for t, m in margins.items() if m <= 1e-6]))
    if best is not None:
        at.append(("best student", [t for t, m in chance_margins(board, best).items() if m <= 1e-6]))
    named = [f"{who} on {', '.join(ts)}" for who, ts in at if ts]
    parts.append(f"at chance: {'; '.join(named)}" if named else "no task at chance for the teacher or the best student")
    return "; ".join(parts)


def _seeds_phrase(row, board: Board) -> str:
    seeds = [s for s in str(row.get("seeds") or "").split(",") if s]
    tasks, columns = board.column_tasks, board.columns
    multi = list(dict.fromkeys(tasks[c].name for c in columns if pd.notna(row.get(c + "_std"))))
    if len(seeds) <= 1 or not multi:
        return f"1 fine-tuning seed ({seeds[0] if seeds else '?'})"
    single = [t for t in _task_scores(row, columns, tasks) if t not in multi]
    return (f"{len(seeds)} fine-tuning seeds ({', '.join(seeds)}) on {', '.join(multi)}"
            + (f", 1 on {', '.join(single)}" if single else ""))


def _family(board: Board, metric: str) -> str:
    """The derived-column suffix that goes with a ranking metric: a macro's own, else that of
    the macro its column belongs to ("_tasks" for an own task's column)."""
    if metric in FAMILIES:
        return FAMILIES[metric]
    return "_tasks" if metric in board.columns and metric not in score_columns() else ""


def _name(metric: str) -> str:
    return "macro" if metric == "macro_score" else metric


def retention_text(board: Board, row, metric: str) -> str:
    """'47.0 % of the teacher's gain over chance [40.1, 53.9] without wnli, rte (teacher < 5 points
    above chance)' (or '... on all 9 tasks') of one row on a macro (board.retention); a sentence saying
    why there is none when the teacher clears chance on none of the macro's tasks; empty without a
    chance level."""
    info = board.retention.get(metric)
    if not info:
        return ""
    left = ", ".join(info["left_out"])
    if not info["tasks"]:
        return (f"no retention over chance: the teacher clears chance by ≥ {CLEAR_MARGIN:.0f} points on none of "
                "its tasks")
    value = row.get("retention_over_chance" + FAMILIES[metric])
    if pd.isna(value):
        return ""
    where = (f"without {left} (teacher < {CLEAR_MARGIN:.0f} points above chance)" if left
             else f"on all {len(info['tasks'])} tasks")
    return (f"{value:.1f} % of the teacher's gain over chance"
            f"{interval_text(row, 'retention_over_chance' + FAMILIES[metric], 1)} {where}")


def _macro_line(board: Board, row, metric: str) -> str:
    """'<metric> 55.20, 47.0 % of the teacher's gain over chance [..] (..), 97.0 % of teacher [95.1,
    98.9]' of one row; for tasks_macro followed by ': <task> <score> (teacher <score>), ...'."""
    sfx, teacher = FAMILIES[metric], board.teacher()
    text = f"{_name(metric)} {row[metric]:.2f}"
    if retention := retention_text(board, row, metric):
        text += f", {retention}"
    if pd.notna(row.get("pct_teacher" + sfx)):
        text += f", {row['pct_teacher' + sfx]:.1f} % of teacher{interval_text(row, 'pct_teacher' + sfx, 1)}"
    if metric == TASKS_MACRO:
        scores = _task_scores(row, board.columns, board.column_tasks)
        theirs = _task_scores(teacher, board.columns, board.column_tasks) if teacher is not None else {}
        text += ": " + ", ".join(f"{task.name} {scores[task.name]:.2f}"
                                 + (f" (teacher {theirs[task.name]:.2f})" if task.name in theirs else "")
                                 for task in board.tasks if task.name in scores)
    return text


def confirmation_lines(confirmation: dict) -> list[str]:
    """The confirmation stage in words (Board.confirmation, distil.evaluation.confirmation.Confirmation
    .to_json()): the claim (which finalists are better than the paper defaults, with simultaneous
    intervals over the finalists) and the A/A line. When the A/A pair comes out distinguishable no
    finalist is called better: the protocol could not tell a configuration from itself."""
    if not confirmation:
        return []
    level = f"{100 * confirmation['level']:.0f} %"
    comps, runs, k = confirmation["comparisons"], confirmation["runs"], len(confirmation["comparisons"])
    aa, noisy = confirmation.get("aa"), confirmation.get("aa_distinguishable")
    name = _name(confirmation["metric"])
    over = f"simultaneous over {k} finalists (max-T)" if k > 1 else "one finalist"
    pd_runs = runs.get(confirmation["paper_defaults"], 0)
    head = (f"confirmation (each finalist and the paper defaults distilled {pd_runs} times with fresh seeds, "
            f"scored on validation rows the search never ranked on; {level} intervals, {over}):")
    lines = [head]
    if not comps:
        lines.append("  no finalist was confirmed (none finished its confirmation runs with scores to compare): "
                     "no claim against the paper defaults")
    for c in comps:
        verdict = c["verdict"]
        if verdict == "better" and not noisy:
            said = f"better than the paper defaults at {level}"
        elif verdict == "better":
            said = "above the paper defaults, but the A/A check says the protocol is too noisy to rank"
        else:
            said = f"{verdict} at {level}" if verdict != "worse" else f"worse than the paper defaults at {level}"
        lines.append(f"  `{c['model']}` ({c['of']}): {name} {c['score']:.2f} vs paper defaults "
                     f"{c['paper_defaults']:.2f}: {c['delta']:+.2f} [{c['lo']:.2f}, {c['hi']:.2f}] — {said}")
    if aa is not None:
        what = ("distinguishable: the protocol tells a configuration from itself, so it is too noisy to rank"
                if noisy else f"not distinguishable at {level}, as it should be" if pd.notna(aa[1])
                else "no interval (nothing varied)")
        lines.append(f"  A/A: the paper defaults' distillation run 0 − run 1 {aa[0]:+.2f} [{aa[1]:.2f}, {aa[2]:.2f}] "
                     f"— {what}; SD between distillation runs {confirmation['sigma_run']:.2f} {name} points, pooled "
                     f"over the confirmed rows ({confirmation['run_dof']} degrees of freedom, of which "
                     f"{confirmation.get('aa_run_dof', confirmation['run_dof'])} from the rows that judge the A/A)")
    return lines


def headline(board: Board) -> str:
    """What a person reads first (a few lines, plain text; top of leaderboard.md and report.html).

    With a confirmation stage, its claim comes first (`confirmation_lines`: which finalists are better
    than the paper defaults on fresh runs, simultaneous intervals, the A/A line) and the search's
    numbers follow, labelled as selection scores. Then: the best student (Board.best_student: by its
    selection score on held-out training rows, which the line names, when it has one) with its
    validation score on the ranking metric (board.rank_by: the first search objective), its share of
    the teacher's gain over chance (naming the tasks left out), its % of teacher, how often it was
    first over the resamples (only with 2 or more students with intervals) and its difference to the
    paper defaults with a 95 % interval and a verdict (better / not distinguishable / worse; "not
    confirmed" beside a win when there is no confirmation stage); a line for tasks_macro (own tasks)
    and for the GLUE macro when they are not the ranking metric; its gain over each reference row
    (over mlm_only: the value of distillation), the seeds, how many tasks the teacher clears chance on
    and which tasks sit at chance, and how the intervals were made."""
    df, best = board.frame, board.best_student()
    if best is None:
        return "No student has finished yet: nothing to rank."
    rank = board.rank_by
    if rank == PERPLEXITY:
        return perplexity_headline(board, best)
    sfx, is_macro = _family(board, rank), rank in FAMILIES
    teacher = board.teacher()
    lines = []
    paper = " (paper defaults)" if board.is_paper_defaults(best) else ""
    first = f"best student `{best['model']}`{paper}: {_name(rank)} {best[rank]:.2f}"
    extra = []
    if is_macro and (retention := retention_text(board, best, rank)):
        extra.append(retention)
    if is_macro and pd.notna(best.get("pct_teacher" + sfx)):
        extra.append(f"{best['pct_teacher' + sfx]:.1f} % of teacher{interval_text(best, 'pct_teacher' + sfx, 1)}")
    elif not is_macro and teacher is not None and pd.notna(teacher[rank]) and teacher[rank] > 0:
        extra.append(f"{100 * best[rank] / teacher[rank]:.1f} % of teacher")
    if pd.notna(best.get("p_best")):
        extra.append(f"first in {100 * best['p_best']:.0f} % of resamples")
    if pd.notna(best.get("selection_score")):  # Board.best_student: chosen on other rows than these
        extra.append(f"picked by its selection score {best['selection_score']:.2f} on held-out training rows")
    first += f" ({'; '.join(extra)})" if extra else ""
    delta = "delta_vs_default" + sfx if is_macro else None
    default = df[(df["model"] == board.paper_defaults) & df["kind"].isin(["student", "reference"])]
    if default.empty and (board.spec.get("search") or {}).get("points_to_evaluate"):
        first += "; the paper_defaults row has not finished (no comparison with the paper defaults yet)"
    elif default.empty:
        first += "; no paper defaults to compare with (the spec has no search.points_to_evaluate)"
    elif default.iloc[0]["status"] != "done":
        first += f"; the paper defaults `{default.iloc[0]['model']}` did not finish ({default.iloc[0]['status']})"
    elif default.iloc[0]["model"] == best["model"]:
        others = df[(df["kind"] == "student") & (df["status"] == "done") & df[rank].notna()
                    & (df["model"] != best["model"])]
        if others.empty:
            first += "; it is the only finished student"
        elif delta is None:
            nxt = others.loc[best_index(others[rank], rank)]
            first += (f"; vs the next best `{nxt['model']}` {best[rank] - nxt[rank]:+.2f} "
                      "(no interval on a single column)")
        else:
            nxt = others.loc[best_index(others[rank], rank)]
            d, lo, hi = -nxt[delta], -nxt.get(delta + "_hi", math.nan), -nxt.get(delta + "_lo", math.nan)
            ci = f" [{lo:.2f}, {hi:.2f}]" if pd.notna(lo) and pd.notna(hi) else ""
            first += f"; vs the next best `{nxt['model']}` {d:+.2f}{ci} — {_verdict(lo, hi)}"
    elif delta is None:
        first += f"; vs paper defaults {best[rank] - default.iloc[0][rank]:+.2f} (no interval on a single column)"
    else:
        first += (f"; vs paper defaults {best[delta]:+.2f}{interval_text(best, delta)} — "
                  f"{_verdict(best.get(delta + '_lo'), best.get(delta + '_hi'))}")
        if not board.confirmation.get("comparisons") and pd.notna(best.get(delta + "_lo")) and best[delta + "_lo"] > 0:
            first += (" (not confirmed: the best of the candidates, picked on these same rows, looks better than it "
                      "is; search.confirm reruns the finalists on fresh seeds)")
    confirmed = confirmation_lines(board.confirmation)
    if confirmed:  # the claim is the confirmation's; the search's numbers are what it selected on
        lines += confirmed
        first = "search stage (selection scores): " + first
    lines.append(first)
    if TASKS_MACRO in df and (rank != TASKS_MACRO or len(board.tasks) > 1) and pd.notna(best.get(TASKS_MACRO)):
        lines.append("user tasks: " + _macro_line(board, best, TASKS_MACRO))
    if rank != "macro_score" and pd.notna(best.get("macro_score")):
        lines.append("GLUE: " + _macro_line(board, best, "macro_score"))
    gains = []
    for ref in sorted(reference_rows(df, TASKS_MACRO if sfx else "macro_score"), key=lambda r: r != "mlm_only"):
        g = best.get(f"gain_over_{ref}{sfx}")
        if pd.notna(g):
            what = " (the value of distillation)" if ref == "mlm_only" else ""
            gains.append(f"{ref}{what} {g:+.2f}{interval_text(best, f'gain_over_{ref}{sfx}')}")
    if gains:
        lines.append("gain over " + "; over ".join(gains) + f" {_name(TASKS_MACRO if sfx else 'macro_score')} points")
    chance = chance_summary(board)
    lines.append(f"{_seeds_phrase(best, board)}" + (f"; {chance}" if chance else ""))
    boot = board.bootstrap
    if boot.get("rows"):
        single = boot.get("single_seed_tasks") or []
        reruns = boot.get("rerun_rows") or {}
        once = "distillation reruns" + (" of the rows distilled once" if reruns else "")
        missing = ([f"seed noise on {', '.join(single)} (one seed)"] if single else []) + (
            [once] if set(boot["rows"]) - set(reruns) else [])
        lines.append(f"[lo, hi]: {100 * boot['level']:.0f} % {boot['method']}, {boot['resamples']} resamples, "
                     f"seed {boot['seed']}" + (f"; not in it: {' or '.join(missing)}" if missing else ""))
    else:
        lines.append("no intervals: no saved predictions to resample")
    return "\n".join(lines)


def _ratio(row, column: str) -> str:
    """`×1.23 [1.10, 1.40]`: a perplexity ratio column of `row` with its interval (empty when missing)."""
    v = row.get(column)
    return "" if v is None or pd.isna(v) else f"×{v:.3f}{interval_text(row, column, 3)}"


def perplexity_headline(board: Board, best: pd.Series) -> str:
    """The headline of a sweep ranked by perplexity (a causal teacher's; lower is better): the best student's
    perplexity with its interval over articles, its ratio to the teacher's (DistilGPT2's 21.1 against GPT-2's
    16.3 is ×1.29) and to the paper defaults' (below 1: better) with paired intervals, the reference rows'
    perplexities (clm_only: no teacher; init_only-<rule>: no distillation step; random_init), and how the
    intervals were made (Board.perplexity)."""
    df, info = board.frame, board.perplexity
    paper = " (paper defaults)" if board.is_paper_defaults(best) else ""
    first = f"best student `{best['model']}`{paper}: perplexity {best[PERPLEXITY]:.2f}{interval_text(best, PERPLEXITY)}"
    if teacher := _ratio(best, "ppl_vs_teacher"):
        t = board.teacher()
        first += f" ({teacher} the teacher's {t[PERPLEXITY]:.2f})" if t is not None else f" ({teacher} the teacher's)"
    default = df[(df["model"] == board.paper_defaults) & (df["status"] == "done")]
    if default.empty:
        first += "; no finished paper defaults to compare with"
    elif default.iloc[0]["model"] != best["model"] and (vs := _ratio(best, "ppl_vs_default")):
        lo, hi = best.get("ppl_vs_default_lo"), best.get("ppl_vs_default_hi")
        verdict = ("better" if hi < 1 else "worse" if lo > 1 else "not distinguishable") if pd.notna(lo) else ""
        first += f"; vs paper defaults {vs}" + (f" — {verdict}" if verdict else "")
    lines = [first]
    refs = df[df["kind"].isin(["reference"]) & df[PERPLEXITY].notna() & (df["model"] != PAPER_DEFAULTS)]
    if len(refs):
        lines.append("references: " + "; ".join(f"{r['model']} {r[PERPLEXITY]:.2f} ({_ratio(r, 'ppl_vs_teacher')} "
                                                 "the teacher's)" for _, r in refs.iterrows()))
    if info:
        lines.append(f"[lo, hi]: {100 * info['level']:.0f} % {info['method']}, {info['resamples']} resamples, "
                     f"seed {info['seed']}; {info['articles']} WikiText articles, {info['tokens']} tokens, window "
                     f"{info['window']}, stride {info['stride']}; not in it: distillation or init seeds")
    return "\n".join(lines)


def _task_note(task: Task) -> str:
    kind = (f"multi-label, {task.num_labels} labels, threshold {task.threshold:g}" if task.problem_type == MULTI
            else f"single-label, {task.num_labels} classes" if task.num_labels and task.num_labels > 1
            else "regression")
    return f"{task.name} ({kind}; {', '.join(task.metrics)})"


def conventions(board: Board) -> list[str]:
    """The notes printed under the leaderboard (markdown, html report): how to read its numbers."""
    df = board.frame
    subsets = sorted({s for v in df.get("subset_data", pd.Series(dtype=str)).dropna() for s in str(v).split()})
    profiled = any(c in df and df[c].notna().any() for c in PROFILE_COLUMNS)
    spread = any(c in df and df[c].notna().any() for c in LATENCY_SPREAD_COLUMNS)
    boot, chance = board.bootstrap, board.chance
    default = df[df["model"] == board.paper_defaults]
    refs = [m for m in df.loc[df["kind"] == "reference", "model"].astype(str)
            if not m.startswith(INIT_ONLY_PREFIX) and m != PAPER_DEFAULTS]  # those have notes of their own
    own = board.tasks
    glue = "macro_score" in df and df["macro_score"].notna().any()
    rank = board.rank_by
    rules = board.chance_rule
    lm = rank == PERPLEXITY  # a perplexity sweep: no macro, so no gain_over_ / delta_vs_default columns
    notes = [
        "Scores ×100 on GLUE validation splits; macro_score = mean of task scores (mnli = mean of its splits present)."
        if glue else
        "No GLUE task in this sweep: macro_score (the GLUE macro) and the columns derived from it are empty.",
        f"User tasks (the spec's `tasks:`), ×100 on their eval split: {'; '.join(_task_note(t) for t in own)}; "
        "a task's score is the mean of its metrics (roc_auc: mean per-label ROC AUC on the probabilities; multi-label "
        "F1s on the probabilities thresholded); tasks_macro = mean of the user tasks' scores; pct_teacher_tasks, "
        "gain_over_<ref>_tasks, gain_over_init_tasks and delta_vs_default_tasks are pct_teacher, gain_over_<ref>, "
        "gain_over_init and delta_vs_default on tasks_macro instead of macro_score." if own else "",
        f"Ranked by {rank} (the spec's first search.objectives; the best student is the best by it"
        + (", lowest first)." if rank == PERPLEXITY else ").") if rank != "macro_score" or own else "",
        perplexity_note(board) if board.perplexity else "",
        *[f"{r}: {REFERENCE_NOTES.get(r, 'a reference row')}" + (f"; gain_over_{r} = macro_score minus its "
          "macro_score (points)." if not lm else ".") for r in refs],
        (INIT_NOTE if not lm else INIT_NOTE.split(";")[0] + ".")
        if df["model"].astype(str).str.startswith(INIT_ONLY_PREFIX).any() else "",
        "task-kd-<task>: task-specific distillation, scored on that task only (no macro_score)."
        if (df["kind"] == "task_distill").any() else "",
        "paper_defaults: the spec's search.points_to_evaluate[0] (the paper's settings) distilled for the "
        "candidates' full budget and fine-tuned, never stopped early: a reference row, not a trial; "
        + ("ppl_vs_default = perplexity over its perplexity." if lm else
           "delta_vs_default = macro_score minus its macro_score (points).")
        if len(default) and default.iloc[0]["model"] == PAPER_DEFAULTS else
        f"paper defaults: candidate `{default.iloc[0]['model']}`, run with the spec's search.points_to_evaluate[0] "
        "(the paper's settings); delta_vs_default = macro_score minus its macro_score (points)."
        if len(default) else "",
        interval_note(board) if boot.get("rows") else "",
        f"p_best = share of resamples in which the student has the highest {rank} of the {boot.get('students', 0)} "
        "done students with intervals (ties share): how stable the order is, not the probability that the student is "
        "the best; empty with fewer than 2 such students." if boot.get("students", 0) >= 2 else "",
        *retention_notes(board),
        ("No intervals for " + "; ".join(f"{m} ({why})" for m, why in sorted(boot.get("excluded", {}).items())) + ".")
        if boot.get("excluded") and not lm else "",  # a perplexity sweep has no predictions to resample
        "chance = the score of predicting the majority class of each split's validation sample (a constant scores 0 on "
        "stsb and on cola's MCC" + ("; on a multi-label task each label's majority, scored as a constant probability: "
                                    "ROC AUC 50" if any(t.problem_type == MULTI for t in own) else "") + "): "
        + ", ".join(f"{c} {v:.2f}" + (f" ({rules[c]})" if c in rules else "") for c, v in chance.items())
        + f"; {CHANCE_MARK} marks a score at or below it." if chance else "",
        f"Seeds: {', '.join(sorted(set(df['seeds'].dropna()) - {''}))}; a score with a matching _std column is the "
        "mean over seeds (sample std in that column), the others come from the first seed." if "seeds" in df and not lm
        else "",
        f"Only available as subsets (task:split): {', '.join(subsets)}." if subsets else "",
        "n_layers, hidden_size, heads, ffn: the model's shape (a row whose params name no width has the teacher's, "
        "read from its config.json); gain_over_<reference> and gain_over_init compare a row with the reference "
        "rows of its own width (named by their shape, e.g. mlm_only-4L192H12F768, at another width than the "
        "teacher's)." if any(w is not None for w in widths(df).values()) else "",
        "size_mb: weight files on disk (1e6 bytes); latency_ms_b1/_b32: CPU forward pass of "
        f"{board.latency_tokens} tokens, 1 torch thread, milliseconds per example at batch 1/32"
        + (" (median over timing rounds, [min, max] of the rounds' medians); the Pareto front treats two latencies "
           "as equal when these ranges overlap or the models have the same n_params (same architecture)."
           if spread else ".")
        if profiled else "",
        "finetune_seconds: fine-tuning + evaluation summed over tasks and seeds (compute: the runs share the machine); "
        "finetune_seconds_<task>: one run of that task (mean over its seeds)." if own else "",
        "status stopped/failed: the trial was stopped early (rung, proxy_score) or failed (reason); it has no scores."
        if df["status"].isin(["stopped", "failed"]).any() else "",
        *provenance_notes(board.provenance),
        "Empty cells: no data for that split (e.g. mnli_mm offline), the trial did not finish, "
        "or the result predates that column.",
    ]
    return [n for n in notes if n]


def interval_note(board: Board) -> str:
    """The note that says how the [lo, hi] intervals were made and exactly what they cover."""
    boot = board.bootstrap
    single, reruns = boot.get("single_seed_tasks") or [], boot.get("rerun_rows") or {}
    runs = ("distillation-run noise of the rows distilled once ("
            + ", ".join(f"{m}, distilled {r} times" for m, r in reruns.items())
            + ", have theirs in: runs drawn with replacement, then seeds within each drawn run), "
            if reruns else "distillation-run noise (every row was distilled once; rerunning a multi-worker CPU "
            "distillation moves a candidate by up to ~1 macro point), ")
    return (
        f"[lo, hi]: {100 * boot['level']:.0f} % percentile interval, {boot['method']}: {boot['resamples']} resamples. "
        "On each, every split's examples are drawn with replacement, the same examples for every model (numpy "
        f"default_rng([{boot['seed']}, split position])), and each row's fine-tuning seeds of each task are drawn "
        "with replacement from the seeds that task ran, independently per row (a drawn seed's deviation from the "
        "seeds' mean is scaled by √(n/(n−1)): a bootstrap over n seeds understates their variance by (n−1)/n); every "
        "metric is recomputed, the drawn seeds averaged, then tasks and macros as above; differences and ratios are "
        "taken within each resample (paired). It covers which validation examples were drawn and the fine-tuning "
        "seed noise of tasks run on several seeds. It does not cover "
        + (f"seed noise on tasks a row ran on one seed ({', '.join(single)}: nothing to resample it from), "
           if single else "")
        + runs + "nor picking the best candidate on these same scores (the best of many equal candidates looks "
        "better than it is).")


def retention_notes(board: Board) -> list[str]:
    """One note per macro with retention over chance: what it is, the tasks it averages and those it
    leaves out (with the teacher's margin over chance)."""
    notes = []
    for metric, info in board.retention.items():
        sfx, name = FAMILIES[metric], _name(metric)
        left = f"; left out (teacher within {CLEAR_MARGIN:.0f} points of chance): " + ", ".join(
            f"{t} {m:+.1f}" for t, m in info["left_out"].items()) if info["left_out"] else ""
        if not info["tasks"]:
            notes.append(f"retention_over_chance{sfx}: empty, the teacher clears the majority class by ≥ "
                         f"{CLEAR_MARGIN:.0f} points on none of the {name}'s tasks{left}.")
            continue
        notes.append(
            f"retention_over_chance{sfx} = 100 · (M(row) − M(chance)) / (M(teacher) − M(chance)), M the {name} over "
            f"the tasks where the teacher clears the majority class by ≥ {CLEAR_MARGIN:.0f} points "
            f"({', '.join(info['tasks'])}){left}: the share of the teacher's gain over chance the row keeps "
            "(pct_teacher starts far above 0: chance itself scores a large % of the teacher); its interval is the "
            "same ratio within each resample (chance recomputed on the drawn examples); retention_<task> (csv and "
            "parquet only) is the same on one task.")
    return notes


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
    return (([f"Provenance: {'; '.join(plain)}."] if plain else [])
            + ([f"Data sha256{under}: {'; '.join(data)}."] if data else []))


def perplexity_note(board: Board) -> str:
    """How to read the perplexity columns (a sweep with lm_eval)."""
    info = board.perplexity
    return (f"perplexity: exp of the mean negative log-likelihood per GPT-2 token on the first {info['articles']} "
            f"articles of WikiText's test split ({info['tokens']} tokens; sliding windows of {info['window']} tokens "
            f"moved by {info['stride']}; {info.get('data')}); lower is better. [lo, hi]: "
            f"{100 * info['level']:.0f} % {info['method']} ({info['resamples']} resamples): the spread from which "
            "articles were drawn, not from distillation or initialisation seeds. ppl_vs_teacher = the row's perplexity "
            "/ the teacher's, ppl_vs_default = / the paper defaults' (below 1: better), with paired intervals.")


def hidden_empty_columns(board: Board) -> set[str]:
    """Columns a sweep cannot fill, left out of the displayed tables when empty: GLUE tasks the
    spec does not run, without any GLUE task the macro_score family, ppl_vs_default without a paper-defaults
    perplexity; and with neither GLUE nor own tasks (a perplexity sweep) finetune_seconds and p_best, which
    only fine-tuning fills (csv/parquet keep them all)."""
    df, run = board.frame, board.glue_tasks
    out = {c + x for t in TASKS.values() if t.name not in run for c in t.columns() for x in ("", "_std")}
    if not run:
        macro = ("macro_score", "pct_teacher", "retention_over_chance", "delta_vs_default")
        out |= {c for c in df.columns if c in macro or (c.startswith("gain_over_") and not c.endswith("_tasks"))}
    out |= {"ppl_vs_default"}  # a perplexity sweep without a paper_defaults row
    no_finetuning = {"finetune_seconds", "p_best"} if not run and not board.tasks else set()  # perplexity only
    return {c for c in out if c in df and df[c].isna().all()} | {c for c in no_finetuning if c in df}


def formatted(board: Board) -> pd.DataFrame:
    """The leaderboard as display strings (2 decimals, n_params in millions, empty for missing):
    the paper-default candidate's model shown as `<id> (paper defaults)`, each interval beside
    its value (`+1.20 [-0.40, 2.80]`), a latency's round spread likewise, a score at or below
    chance marked with †, and a `chance` row at the end; without the long seeds, subset_data,
    at_chance, per-task finetune_seconds_<task> and retention_<task> columns (summarised by
    `conventions` and `comparison_table`), and without the columns of GLUE tasks the sweep does not run."""
    def cell(v, column):
        if pd.isna(v):
            return ""
        if column == "n_params":
            return f"{v / 1e6:.1f}M"
        if column in ("n_layers", "rung", *SHAPE_COLUMNS):
            return f"{int(v)}"
        if column.startswith("ppl_vs_"):  # a ratio near 1: three decimals
            return f"{v:.3f}"
        return f"{v:.2f}" if isinstance(v, float) else str(v)

    df = board.frame
    pairs = {c: (c + lo, c + hi) for c in df.columns for lo, hi in (("_lo", "_hi"), ("_min", "_max"))
             if c + lo in df.columns and c + hi in df.columns}
    hidden = {"subset_data", "seeds", "at_chance", "paper_defaults", *(x for p in pairs.values() for x in p),
              *(c for c in df.columns if c.startswith("finetune_seconds_")),
              *(c for c in df.columns if c.startswith("retention_") and not c.startswith("retention_over_chance"))}
    empty = hidden_empty_columns(board)
    hidden |= empty | {x for c in empty if c in pairs for x in pairs[c]}
    shown = [c for c in df.columns if c not in hidden]
    out = {}
    for c in shown:
        values = []
        for _, r in df.iterrows():
            text = cell(r[c], c)
            if c == "model" and board.is_paper_defaults(r):
                text += " (paper defaults)"
            if c in pairs and text and pd.notna(r[pairs[c][0]]) and pd.notna(r[pairs[c][1]]):
                text += f" [{cell(r[pairs[c][0]], c)}, {cell(r[pairs[c][1]], c)}]"
            if text and c in str(r.get("at_chance") or "").split():
                text += CHANCE_MARK
            values.append(text)
        out[c] = values
    table = pd.DataFrame(out)
    chance = board.chance
    if chance:
        row = {c: "" for c in shown} | {"model": "chance (majority class)"}
        row |= {c: f"{v:.2f}" for c, v in chance.items() if c in row}
        if "macro_score" in row:
            row["macro_score"] = cell(macro_score(chance, board.include_wnli), "macro_score")
        if TASKS_MACRO in row:
            row[TASKS_MACRO] = cell(macro_over(chance, board.tasks), TASKS_MACRO)
        table = pd.concat([table, pd.DataFrame([row])], ignore_index=True)
    return table


def comparison_sentences(board: Board) -> list[str]:
    """One line per own task: 'uci_news: best student `x` reaches 96.4 % [95.0, 97.9] of the
    teacher's score (84.10 vs 87.20) at 2.0× the speed (batch 32; 1.9× at batch 1), with 2.0×
    fewer parameters, fine-tuned in 0.52× the teacher's time' (from board.comparison)."""
    rows = board.comparison
    lines = []
    for task in dict.fromkeys(r["task"] for r in rows):
        by_role = {r["role"]: r for r in rows if r["task"] == task}
        t, s = by_role.get("teacher"), by_role.get("best student")
        if not t or not s or s["score"] is None:
            continue
        text = f"{task}: best student `{s['model']}` "
        if s["pct_teacher"] is not None:
            ci = f" [{s['pct_teacher_lo']:.1f}, {s['pct_teacher_hi']:.1f}]" if s["pct_teacher_lo"] is not None else ""
            text += (f"reaches {s['pct_teacher']:.1f} %{ci} of the teacher's score "
                     f"({s['score']:.2f} vs {t['score']:.2f})")
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


def comparison_table(board: Board) -> pd.DataFrame:
    """Teacher vs best student on each own task, as display strings: task, model, score, % of
    teacher [95 % interval], fine-tune s (one run), latency ms/example at batch 1 and 32, speed-up
    (teacher latency / row latency, batch 32), parameters (M). Empty without own tasks."""
    def f(v, fmt):
        return "" if v is None else format(v, fmt)

    rows = []
    for r in board.comparison:
        student = r["role"] != "teacher"
        ci = (f" [{r['pct_teacher_lo']:.1f}, {r['pct_teacher_hi']:.1f}]" if r["pct_teacher_lo"] is not None and student
              else "")
        rows.append({"task": r["task"], "model": f"{r['model']}" + (" (best student)" if student else ""),
                     "score": f(r["score"], ".2f"), "% of teacher": f(r["pct_teacher"], ".1f") + ci,
                     "fine-tune s (one run)": f(r["finetune_seconds"], ".1f"),
                     "latency ms b1": f(r["latency_ms_b1"], ".2f"), "latency ms b32": f(r["latency_ms_b32"], ".2f"),
                     "speed-up b32": f(r["speedup_b32"], ".2f") + ("×" if r["speedup_b32"] is not None else ""),
                     "params": f(r["n_params"] / 1e6 if r["n_params"] is not None else None, ".1f")
                     + ("M" if r["n_params"] else "")})
    return pd.DataFrame(rows)


def comparison_note(board: Board) -> str:
    """The note under the teacher-vs-best-student table of the user's tasks."""
    return COMPARISON_NOTE.format(tokens=board.latency_tokens)


COMPARISON_NOTE = (
    "Per user task: the teacher and the done student with the best score on that task. Fine-tune s: one fine-tuning "
    "+ evaluation run of that task (result.json runs' seconds, mean over seeds; runs share the machine with the "
    "sweep's other work, so read it as a rough cost). Latency: the profile measured alone on the machine before the "
    "sweep (distil.evaluation.profile: CPU, 1 thread, {tokens} tokens, ms per example; the same for every student "
    "of one depth). Speed-up = the teacher's latency / the row's. % of teacher with its 95 % paired multi-bootstrap "
    "interval on that task's score.")


def pareto_line(board: Board) -> str:
    """'Pareto front of <metric> against CPU latency at batch 32, across shapes: ...' naming each model on the
    front (board.pareto_rows) with its shape, score and latency, best score first; '' when every row has the
    teacher's width (a teacher-width sweep's front is the Pareto plot's alone)."""
    df = board.frame
    if "model" not in df or all(w is None for w in widths(df).values()):
        return ""
    rows = df.set_index("model")
    front = [f"{m}{shape_label(df, rows.loc[m])} {rows.loc[m, board.rank_by]:.2f} at "
             f"{rows.loc[m, 'latency_ms_b32']:.2f} ms" for m in pareto_rows(board)]
    return (f"Pareto front of {board.rank_by} against CPU latency at batch 32 (ms per example), across shapes: "
            + ("; ".join(front) if front else "none (no latency profiled)"))


def to_markdown(board: Board) -> str:
    """The headline, the leaderboard as a markdown table (chance row last), the teacher-vs-best-
    student comparison on each own task, and the conventions as a bullet list."""
    table = formatted(board).to_markdown(index=False, disable_numparse=True)
    head = "\n".join(f"**{line}**  " if i == 0 else f"{line}  " for i, line in enumerate(headline(board).splitlines()))
    comparison = comparison_table(board)
    extra = ""
    if not comparison.empty:
        extra = ("\n\n### Teacher vs best student on each user task\n\n"
                 + "\n".join(f"- {s}" for s in comparison_sentences(board)) + "\n\n"
                 + comparison.to_markdown(index=False, disable_numparse=True) + "\n\n" + comparison_note(board))
    front = pareto_line(board)
    head += f"\n{front}  " if front else ""
    return head + "\n\n" + table + extra + "\n\n" + "\n".join(f"- {n}" for n in conventions(board)) + "\n"
