"""One self-contained html report of a sweep: plots + the leaderboard + how to read it.

`write_html(df, results_dir)` writes `report.html` (PNGs embedded as base64 data URIs, so the
file can be mailed or attached to a CI run on its own) and the same PNGs under `plots/`:
  * scores.png    models x GLUE score columns, coloured within each column (which model is best
                  at each task; tasks have very different scales), values annotated, no data grey;
  * pareto.png    macro_score against encoder parameters and against batch-32 latency, with the
                  Pareto front (higher macro at fewer params / lower latency) and the teacher marked;
  * progress.png  macro_score of each trial in start order and the running best: the search's progress.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on a cluster node or in CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from distil import leaderboard  # noqa: E402
from distil.glue import score_columns  # noqa: E402

TEACHER_COLOUR, STUDENT_COLOUR, FRONT_COLOUR = "tab:orange", "tab:blue", "tab:red"


def pareto_front(cost, score) -> np.ndarray:
    """Boolean mask of the points no other point beats: none has cost <= and score >= with one
    of them strict. Lower cost and higher score are better; points with a NaN are never on it."""
    cost, score = np.asarray(cost, dtype=float), np.asarray(score, dtype=float)
    valid = ~(np.isnan(cost) | np.isnan(score))
    front = np.zeros(len(cost), dtype=bool)
    for i in np.flatnonzero(valid):
        no_worse = valid & (cost <= cost[i]) & (score >= score[i])
        better = no_worse & ((cost < cost[i]) | (score > score[i]))
        front[i] = not better.any()
    return front


def _label(row) -> str:
    return "teacher" if row["kind"] == "teacher" else str(row["model"])


def plot_scores(df: pd.DataFrame, path: Path) -> None:
    """Heatmap of models (leaderboard order) x score columns; colour = position between the
    column's worst and best score (tasks differ too much in scale to share one colour scale)."""
    cols = [c for c in score_columns() if c in df]
    values = df[cols].to_numpy(dtype=float)
    lo, hi = np.nanmin(values, axis=0, initial=np.inf), np.nanmax(values, axis=0, initial=-np.inf)
    tie = np.broadcast_to(~(hi > lo), values.shape)  # one model, or all equal: no best to colour
    with np.errstate(invalid="ignore", divide="ignore"):
        relative = np.where(tie, 0.0, (values - lo) / (hi - lo))
    cmap = plt.get_cmap("viridis")
    colours = cmap(relative)
    colours[tie] = (1, 1, 1, 1)
    colours[np.isnan(values)] = (0.85, 0.85, 0.85, 1)
    fig, ax = plt.subplots(figsize=(1.0 * len(cols) + 3, 0.45 * len(df) + 1.8))
    ax.imshow(colours, aspect="auto")
    for (i, j), v in np.ndenumerate(values):
        if not np.isnan(v):
            dark = not tie[i, j] and relative[i, j] < 0.6
            ax.text(j, i, f"{v:.1f}", ha="center", va="center", fontsize=8, color="white" if dark else "black")
    macro = [f"{_label(r)}  ({r['macro_score']:.1f})" if pd.notna(r["macro_score"]) else f"{_label(r)}  (—)"
             for _, r in df.iterrows()]
    ax.set_yticks(range(len(df)), macro, fontsize=9)
    ax.set_xticks(range(len(cols)), cols, rotation=45, ha="right")
    ax.set_title("GLUE validation scores ×100 (colour: worst → best within each column; "
                 "white: all equal; grey: no data)", fontsize=10)
    ax.set_ylabel("model  (macro_score)")
    bar = fig.colorbar(plt.cm.ScalarMappable(cmap=cmap), ax=ax, fraction=0.03, pad=0.02, ticks=[0, 1])
    bar.ax.set_yticklabels(["worst", "best"])
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _pareto_panel(ax, df: pd.DataFrame, cost: str, what: str, xlabel: str, scale: float = 1.0) -> None:
    done = df[df["macro_score"].notna() & df["kind"].isin(["teacher", "student"])]
    x = pd.to_numeric(done[cost], errors="coerce").to_numpy(dtype=float) / scale
    y = done["macro_score"].to_numpy(dtype=float)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("macro_score")
    if np.isnan(x).all():
        ax.text(0.5, 0.5, f"no {what} data\n(no {cost} in these results)",
                ha="center", va="center", transform=ax.transAxes, color="grey")
        ax.set_xticks([]), ax.set_yticks([])
        return
    front = pareto_front(x, y)
    teacher = (done["kind"] == "teacher").to_numpy()
    ax.scatter(x[~teacher], y[~teacher], color=STUDENT_COLOUR, label="student", zorder=3)
    ax.scatter(x[teacher], y[teacher], color=TEACHER_COLOUR, marker="*", s=180, label="teacher", zorder=3)
    ax.scatter(x[front], y[front], facecolors="none", edgecolors=FRONT_COLOUR, s=220, linewidths=1.6,
               label="Pareto front", zorder=4)
    order = np.argsort(x[front])
    ax.step(x[front][order], y[front][order], where="post", color=FRONT_COLOUR, alpha=0.5)
    for xi, yi, name in zip(x, y, [_label(r) for _, r in done.iterrows()]):
        if not np.isnan(xi):
            ax.annotate(name, (xi, yi), textcoords="offset points", xytext=(6, 4), fontsize=8,
                        fontweight="bold" if name == "teacher" else "normal")
    ax.margins(x=0.15, y=0.15)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")


def plot_pareto(df: pd.DataFrame, path: Path) -> None:
    """macro_score vs n_params and vs latency_ms_b32 of the teacher and the students (reference
    rows left out: random_init costs what a student costs), Pareto front circled, teacher labelled."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6))
    _pareto_panel(axes[0], df, "n_params", "parameter", "encoder parameters (millions)", scale=1e6)
    _pareto_panel(axes[1], df, "latency_ms_b32", "latency", "CPU latency at batch 32 (ms per example, 128 tokens, 1 thread)")
    fig.suptitle("Quality against cost: up and to the left is better", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_progress(df: pd.DataFrame, path: Path) -> None:
    """Each trial's macro_score by start order (trial_index), the running best, the teacher's level."""
    trials = df[(df["kind"] == "student") & df["trial_index"].notna()].sort_values("trial_index")
    fig, ax = plt.subplots(figsize=(8, 4.2))
    idx = trials["trial_index"].to_numpy(dtype=float)
    macro = trials["macro_score"].to_numpy(dtype=float)
    ax.scatter(idx, macro, color=STUDENT_COLOUR, zorder=3, label="trial")
    ax.step(idx, pd.Series(macro).cummax().ffill().to_numpy(), where="post", color=FRONT_COLOUR, label="best so far")
    for i, m, name in zip(idx, macro, trials["model"]):
        if not np.isnan(m):
            ax.annotate(str(name), (i, m), textcoords="offset points", xytext=(5, 4), fontsize=8)
    teacher = df.loc[df["kind"] == "teacher", "macro_score"].dropna()
    if len(teacher):
        ax.axhline(teacher.iloc[0], color=TEACHER_COLOUR, linestyle="--", label="teacher")
    random_init = df.loc[df["model"] == "random_init", "macro_score"].dropna()
    if len(random_init):
        ax.axhline(random_init.iloc[0], color="grey", linestyle=":", label="random_init (no distillation)")
    missing = int(np.isnan(macro).sum())
    ax.set_title("Search progress" + (f" ({missing} unfinished trial(s) not shown)" if missing else ""), fontsize=11)
    ax.set_xlabel("trial (in order of start)")
    ax.set_ylabel("macro_score")
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


PLOTS = {"scores": plot_scores, "pareto": plot_pareto, "progress": plot_progress}


def write_html(df: pd.DataFrame, results_dir: str | Path) -> Path:
    """Write `results_dir/plots/{scores,pareto,progress}.png` and `results_dir/report.html`
    (plots embedded, leaderboard table, conventions); returns the html path."""
    results_dir = Path(results_dir)
    (results_dir / "plots").mkdir(exist_ok=True)
    images = []
    for name, plot in PLOTS.items():
        png = results_dir / "plots" / f"{name}.png"
        plot(df, png)
        data = base64.b64encode(png.read_bytes()).decode()
        images.append(f'<img alt="{name}" src="data:image/png;base64,{data}">')
    table = leaderboard.formatted(df).to_html(index=False, border=0, classes="leaderboard", escape=True)
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in leaderboard.conventions(df))
    spec_file = results_dir / "spec.json"
    sweep = json.loads(spec_file.read_text())["name"] if spec_file.exists() else results_dir.resolve().name
    title = f"distil-sweep report: {html.escape(sweep)}"
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
</style></head>
<body>
<h1>{title}</h1>
<p>Results in <code>{html.escape(str(results_dir.resolve()))}</code>: {int((df["kind"] == "student").sum())} student
trials ({int(((df["kind"] == "student") & (df["status"] == "done")).sum())} done) and
{"the teacher" if (df["kind"] == "teacher").any() else "no teacher row"}{_reference_phrase(df)}, ranked by macro_score.</p>
<h2>Leaderboard</h2>
<div class="scroll">{table}</div>
<ul>{notes}</ul>
<h2>Plots</h2>
{"".join(images)}
</body></html>
"""
    out = results_dir / "report.html"
    out.write_text(page)
    return out
