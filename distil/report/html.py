"""One self-contained html report of a sweep: plots + the leaderboard + how to read it.

`write_html(board, results_dir)` writes `report.html` (PNGs embedded as base64 data URIs, so the
file can be mailed or attached to a CI run on its own) and the same PNGs under `plots/`:
  * scores.png    models x score columns (the GLUE tasks the sweep runs, then the user's own
                  tasks), coloured within each column (which model is best at each task; tasks
                  have very different scales), values annotated, no data grey, a score at or below
                  chance hatched and marked †, the chance row last;
  * pareto.png    the ranking metric (board.rank_by: macro_score, tasks_macro or a task's
                  column) against encoder parameters and against batch-32 latency (with its
                  spread over timing rounds), with the Pareto front (higher score at fewer params /
                  lower latency; latencies within each other's spread, or of the same architecture,
                  count as equal) and the teacher marked;
  * progress.png  the ranking metric of each trial in start order and the running best: the search's progress;
  * curves.png    the early-stopping proxy score against distillation tokens.
The html also holds the teacher-vs-best-student comparison on each user task
(distil.report.summary.comparison_table).
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on a cluster node or in CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from distil.config.objectives import lower_is_better  # noqa: E402
from distil.evaluation.scores import TASKS_MACRO, macro_over, macro_score  # noqa: E402
from distil.report import summary  # noqa: E402
from distil.report.board import Board, pareto_front, shape_label  # noqa: E402, F401  (pareto_front: html's API too)
from distil.store.records import ResultsDir, base_name, read_json, shape_key  # noqa: E402

TEACHER_COLOUR, STUDENT_COLOUR, FRONT_COLOUR = "tab:orange", "tab:blue", "tab:red"


def _label(board: Board, row) -> str:
    if row["kind"] == "teacher":
        return "teacher"
    return (str(row["model"]) + (" (paper defaults)" if board.is_paper_defaults(row) else "")
            + shape_label(board.frame, row))


def score_columns_shown(board: Board) -> list[str]:
    """The split columns the tables show: GLUE's the sweep runs (or that hold data), then the own tasks'."""
    hidden = summary.hidden_empty_columns(board)
    return [c for c in board.columns if c in board.frame and c not in hidden]


def plot_scores(board: Board, path: Path) -> None:
    """Heatmap of models (leaderboard order) x score columns (GLUE's, then the user's tasks);
    colour = position between the column's worst and best score (tasks differ too much in scale
    to share one colour scale). Row labels carry the ranking metric."""
    df, cols, metric, chance = board.frame, score_columns_shown(board), board.rank_by, board.chance
    values = df[cols].to_numpy(dtype=float)
    at_chance = np.array([[c in str(r.get("at_chance") or "").split() for c in cols]
                          for _, r in df.iterrows()]).reshape(values.shape)
    lo, hi = np.nanmin(values, axis=0, initial=np.inf), np.nanmax(values, axis=0, initial=-np.inf)
    tie = np.broadcast_to(~(hi > lo), values.shape)  # one model, or all equal: no best to colour
    with np.errstate(invalid="ignore", divide="ignore"):
        relative = np.where(tie, 0.0, (values - lo) / (hi - lo))
    cmap = plt.get_cmap("viridis")
    colours = cmap(relative)
    colours[tie] = (1, 1, 1, 1)
    colours[np.isnan(values)] = (0.85, 0.85, 0.85, 1)
    macro = [f"{_label(board, r)}  ({r[metric]:.1f})" if pd.notna(r[metric])
             else f"{_label(board, r)}  ({r['status'] if r.get('status') not in (None, 'done') else '—'})"
             for _, r in df.iterrows()]
    if chance:  # the majority-class level as a last, uncoloured row
        level = np.array([chance.get(c, np.nan) for c in cols])
        values = np.vstack([values, level])
        colours = np.vstack([colours, np.tile((0.93, 0.93, 0.93, 1), (1, len(cols), 1))])
        at_chance = np.vstack([at_chance, np.zeros(len(cols), dtype=bool)])
        tie = np.vstack([tie, np.ones(len(cols), dtype=bool)])
        chance_macro = {"macro_score": macro_score(chance, board.include_wnli),
                        TASKS_MACRO: macro_over(chance, board.tasks)}.get(metric, chance.get(metric, np.nan))
        macro.append(f"chance (majority class)  ({chance_macro:.1f})")
    # max(8, ...): with 2 columns there is still room for the title
    fig, ax = plt.subplots(figsize=(max(8.0, 1.0 * len(cols) + 3), 0.45 * len(values) + 1.8))
    ax.imshow(colours, aspect="auto")
    for (i, j), v in np.ndenumerate(values):
        if not np.isnan(v):
            dark = not tie[i, j] and relative[i, j] < 0.6
            mark = summary.CHANCE_MARK if at_chance[i, j] else ""
            ax.text(j, i, f"{v:.1f}{mark}", ha="center", va="center", fontsize=8, color="white" if dark else "black")
            if at_chance[i, j]:
                ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, hatch="///", edgecolor="red", lw=0))
    ax.set_yticks(range(len(values)), macro, fontsize=9)
    ax.set_xticks(range(len(cols)), cols, rotation=45, ha="right")
    ax.set_title("Validation scores ×100\ncolour: worst → best within each column; white: all equal;\n"
                 f"grey: no data; hatched {summary.CHANCE_MARK}: at or below chance", fontsize=10)
    ax.set_ylabel(f"model  ({metric})")
    bar = fig.colorbar(plt.cm.ScalarMappable(cmap=cmap), ax=ax, fraction=0.03, pad=0.02, ticks=[0, 1])
    bar.ax.set_yticklabels(["worst", "best"])
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _pareto_panel(ax, board: Board, cost: str, what: str, xlabel: str, scale: float = 1.0) -> None:
    df, metric = board.frame, board.rank_by
    done = df[df[metric].notna() & df["kind"].isin(["teacher", "student"])]
    x = pd.to_numeric(done[cost], errors="coerce").to_numpy(dtype=float) / scale
    spread = [pd.to_numeric(done.get(cost + s, pd.Series(np.nan, index=done.index)), errors="coerce")
              .to_numpy(dtype=float) / scale for s in ("_min", "_max")]
    y = done[metric].to_numpy(dtype=float)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(metric)
    if np.isnan(x).all():
        ax.text(0.5, 0.5, f"no {what} data\n(no {cost} in these results)",
                ha="center", va="center", transform=ax.transAxes, color="grey")
        ax.set_xticks([]), ax.set_yticks([])
        return
    # Same architecture (n_params), or latencies within each other's spread: one cost.
    front = pareto_front(x, -y if lower_is_better(metric) else y, *spread, same=done["n_params"])
    teacher = (done["kind"] == "teacher").to_numpy()
    has_spread = ~np.isnan(spread[0]) & ~np.isnan(spread[1])
    if has_spread.any():
        xerr = [x[has_spread] - spread[0][has_spread], spread[1][has_spread] - x[has_spread]]
        ax.errorbar(x[has_spread], y[has_spread], xerr=xerr, fmt="none", ecolor="grey", elinewidth=1, capsize=3,
                    zorder=2, label="min–max over timing rounds")
    ax.scatter(x[~teacher], y[~teacher], color=STUDENT_COLOUR, label="student", zorder=3)
    ax.scatter(x[teacher], y[teacher], color=TEACHER_COLOUR, marker="*", s=180, label="teacher", zorder=3)
    ax.scatter(x[front], y[front], facecolors="none", edgecolors=FRONT_COLOUR, s=220, linewidths=1.6,
               label="Pareto front", zorder=4)
    order = np.argsort(x[front])
    ax.step(x[front][order], y[front][order], where="post", color=FRONT_COLOUR, alpha=0.5)
    for xi, yi, name in zip(x, y, [_label(board, r) for _, r in done.iterrows()]):
        if not np.isnan(xi):
            ax.annotate(name, (xi, yi), textcoords="offset points", xytext=(6, 4), fontsize=8,
                        fontweight="bold" if name == "teacher" else "normal")
    ax.margins(x=0.15, y=0.15)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")


def plot_pareto(board: Board, path: Path) -> None:
    """The ranking metric vs n_params and vs latency_ms_b32 of the teacher and the students (reference
    rows left out: random_init costs what a student costs), Pareto front circled (see
    `pareto_front`: models of the same size, or with overlapping latency spreads, are one cost),
    teacher labelled."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6))
    _pareto_panel(axes[0], board, "n_params", "parameter", "encoder parameters (millions)", scale=1e6)
    _pareto_panel(axes[1], board, "latency_ms_b32", "latency",
                  f"CPU latency at batch 32 (ms per example, {board.latency_tokens} tokens, 1 thread)")
    way = "down" if lower_is_better(board.rank_by) else "up"
    fig.suptitle(f"Quality against cost: {way} and to the left is better", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_progress(board: Board, path: Path) -> None:
    """Each trial's ranking metric by start order (trial_index), the running best, the teacher's level."""
    df, metric = board.frame, board.rank_by
    trials = df[(df["kind"] == "student") & df["trial_index"].notna()].sort_values("trial_index")
    fig, ax = plt.subplots(figsize=(8, 4.2))
    idx = trials["trial_index"].to_numpy(dtype=float)
    macro = trials[metric].to_numpy(dtype=float)
    ax.scatter(idx, macro, color=STUDENT_COLOUR, zorder=3, label="trial")
    running = pd.Series(macro).cummin() if lower_is_better(metric) else pd.Series(macro).cummax()
    ax.step(idx, running.ffill().to_numpy(), where="post", color=FRONT_COLOUR, label="best so far")
    for i, m, (_, row) in zip(idx, macro, trials.iterrows()):
        if not np.isnan(m):
            ax.annotate(_label(board, row), (i, m), textcoords="offset points", xytext=(5, 4), fontsize=8)
    teacher = df.loc[df["kind"] == "teacher", metric].dropna()
    if len(teacher):
        ax.axhline(teacher.iloc[0], color=TEACHER_COLOUR, linestyle="--", label="teacher")
    random_init = df.loc[df["model"].astype(str).map(base_name) == "random_init", metric].dropna()
    if len(random_init):
        ax.axhline(random_init.iloc[0], color="grey", linestyle=":", label="random_init (no distillation)")
    missing = int(np.isnan(macro).sum())
    ax.set_title("Search progress" + (f" ({missing} unfinished trial(s) not shown)" if missing else ""), fontsize=11)
    ax.set_xlabel("trial (in order of start)")
    ax.set_ylabel(metric)
    if len(idx):
        ax.set_xticks(idx.astype(int))
    ax.margins(x=0.15, y=0.2)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _reference_phrase(df: pd.DataFrame) -> str:
    names = df.loc[df["kind"].isin(["reference", "task_distill"]), "model"].astype(str).tolist()
    return f", with reference rows {', '.join(names)}" if names else ""


def _status_phrase(df: pd.DataFrame) -> str:
    counts = df.loc[df["kind"] == "student", "status"].value_counts()
    return ", ".join(f"{n} {status}" for status, n in counts.items()) or "none"


def learning_curves(results_dir: str | Path) -> dict:
    """Proxy score against distillation tokens, from the stored files: {'candidates': {model:
    [(tokens, proxy_score), ...] with step 0 = the undistilled student of its init}, 'status':
    {model: done/stopped/...}, 'init': {rule: score}, 'teacher': score or None}. Empty without
    early stopping (no proxy was scored)."""
    results = ResultsDir(results_dir)

    def read(p: Path):  # a damaged file is left out of the plot (the leaderboard marks its row corrupt)
        try:
            return read_json(p) if p.exists() else None
        except (OSError, ValueError):
            return None

    teacher = read(results.teacher().proxy_file)
    # At another width than the teacher's the row's name ends in its shape (init_only-<rule>-4L192H12F768).
    inits = {f"{ref.rule} ({ref.name[len(base_name(ref.name)) + 1:] or f'{n}L'})": read(p)["proxy_score"]
             for ref in results.init_onlys() for n, p in ref.init_proxies().items()}
    curves, status = {}, {}
    for cand in results.candidates():
        progress, config = read(cand.progress_file), read(cand.config_file)
        rungs = [r for r in (progress or {}).get("rungs", [])
                 if isinstance(r, dict) and r.get("proxy_score") is not None]
        params = (config or {}).get("params") if isinstance(config, dict) else None
        if not rungs or not isinstance(params, dict) or "layer_selection" not in params:
            continue
        key = shape_key(params.get("n_layers"), params.get("hidden_size"), params.get("num_attention_heads"),
                        params.get("intermediate_size"))  # '' at the teacher's width
        start = read(results.init_only(str(params["layer_selection"]), key).init_proxy_file(params.get("n_layers")))
        curves[cand.name] = (([(0, start["proxy_score"])] if start else [])
                             + [(r.get("tokens", 0), r["proxy_score"]) for r in rungs])
        status[cand.name] = "done" if cand.has_result() else (read(cand.status_file) or {}).get("status", "running")
    return {"candidates": curves, "status": status, "init": inits,
            "teacher": teacher["proxy_score"] if teacher else None}


def plot_learning_curves(board: Board, path: Path, results_dir: str | Path) -> None:
    """Each candidate's proxy score against the distillation tokens it has seen (step 0: its
    undistilled init; a stopped candidate's curve ends where it was stopped), with the teacher's
    proxy score and each undistilled init's as horizontal lines."""
    data = learning_curves(results_dir)
    fig, ax = plt.subplots(figsize=(8, 4.6))
    if not data["candidates"]:
        ax.text(0.5, 0.5, "no learning curves\n(the sweep ran without early stopping: no proxy scores)",
                ha="center", va="center", transform=ax.transAxes, color="grey")
        ax.set_xticks([]), ax.set_yticks([])
    labels = {r["model"]: _label(board, r) for _, r in board.frame.iterrows()} if "model" in board.frame else {}
    for model, points in data["candidates"].items():
        x, y = zip(*points)
        stopped = data["status"].get(model) != "done"
        ax.plot(x, y, marker="o", linestyle="--" if stopped else "-", alpha=0.8,
                label=f"{labels.get(model, model)}{' (stopped)' if stopped else ''}")
    if data["teacher"] is not None:
        ax.axhline(data["teacher"], color=TEACHER_COLOUR, linestyle="--", label="teacher")
    for i, (rule, score) in enumerate(data["init"].items()):
        ax.axhline(score, color="grey", linestyle=":", alpha=0.6 + 0.4 * (i == 0), label=f"init_only {rule}")
    ax.set_xlabel("distillation tokens seen")
    ax.set_ylabel("proxy_score")
    ax.set_title("Learning curves on the early-stopping proxy", fontsize=11)
    ax.grid(alpha=0.3)
    if data["candidates"]:
        ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


PLOTS = {"scores": plot_scores, "pareto": plot_pareto, "progress": plot_progress, "curves": plot_learning_curves}


def write_html(board: Board, results_dir: str | Path) -> Path:
    """Write `results_dir/plots/{scores,pareto,progress,curves}.png` and `results_dir/report.html`
    (the headline first, then the leaderboard table with its chance row, conventions, plots
    embedded); returns the html path."""
    results_dir = Path(results_dir)
    (results_dir / "plots").mkdir(exist_ok=True)
    images = []
    for name, plot in PLOTS.items():
        if plot is plot_scores and not score_columns_shown(board):
            continue  # no split scores (a perplexity sweep): the Pareto and progress plots show its metric
        png = results_dir / "plots" / f"{name}.png"
        plot(board, png, results_dir) if plot is plot_learning_curves else plot(board, png)
        data = base64.b64encode(png.read_bytes()).decode()
        images.append(f'<img alt="{name}" src="data:image/png;base64,{data}">')
    df = board.frame
    table = summary.formatted(board).to_html(index=False, border=0, classes="leaderboard", escape=True)
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in summary.conventions(board))
    headline = "".join(f"<p>{html.escape(line)}</p>" for line in summary.headline(board).splitlines())
    comparison = summary.comparison_table(board)
    compared = "" if comparison.empty else (
        "<h2>Teacher vs best student on each user task</h2><ul>"
        + "".join(f"<li>{html.escape(s)}</li>" for s in summary.comparison_sentences(board)) + "</ul>"
        + f'<div class="scroll">{comparison.to_html(index=False, border=0, classes="leaderboard", escape=True)}</div>'
        + f"<p>{html.escape(summary.comparison_note(board))}</p>")
    title = f"distil-sweep report: {html.escape(ResultsDir(results_dir).sweep_name())}"
    teacher = "the teacher" if (df["kind"] == "teacher").any() else "no teacher row"
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{title}</title>
<style>
 body {{ font-family: system-ui, sans-serif; margin: 24px; color: #222; }}
 img {{ display: block; max-width: 100%; margin: 12px 0 28px; }}
 .scroll {{ overflow-x: auto; }}
 table.leaderboard {{ border-collapse: collapse; font-size: 11px; white-space: nowrap; }}
 table.leaderboard th, table.leaderboard td {{ padding: 3px 6px; border-bottom: 1px solid #ddd; text-align: right; }}
 table.leaderboard th:first-child, table.leaderboard td:first-child {{ text-align: left; }}
 table.leaderboard tr:hover {{ background: #f4f4f4; }}
 .headline {{ border-left: 4px solid #c33; background: #fafafa; padding: 8px 14px; margin: 12px 0 20px; }}
 .headline p {{ margin: 4px 0; }}
 .headline p:first-child {{ font-size: 1.1em; font-weight: 600; }}
</style></head>
<body>
<h1>{title}</h1>
<div class="headline">{headline}</div>
<p>Results in <code>{html.escape(str(results_dir.resolve()))}</code>: {int((df["kind"] == "student").sum())} student
trials ({_status_phrase(df)}) and
{teacher}{_reference_phrase(df)}, ranked by {html.escape(board.rank_by)}.</p>
<h2>Leaderboard</h2>
<div class="scroll">{table}</div>
{compared}
<ul>{notes}</ul>
<h2>Plots</h2>
{"".join(images)}
</body></html>
"""
    out = results_dir / "report.html"
    out.write_text(page)
    return out
