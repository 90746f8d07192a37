"""The leaderboard on the user's own tasks: hand-made results dirs with real prediction files
(distil.evaluation.finetune.predictions_frame) of a 4-class single-label task and a 28-label multi-label
task beside a GLUE column -> split columns, tasks_macro, its `_tasks` intervals, chance marks,
the ranking objective, the teacher-vs-best-student comparison; and the objectives a spec may name."""

from dataclasses import asdict

import numpy as np
import pandas as pd
import pytest
import yaml

from distil.config.glue import score_columns
from distil.evaluation import confidence
from distil.report import export
from distil.report import leaderboard
from distil.report import html as report
from distil.report import summary
from distil.evaluation import scores
from distil.evaluation.finetune import score_predictions
from tests.handmade import (DEFAULT_PARAMS, SPEC, labels_for, noisy, own_task, task_labels, task_logits, write_json,
                            write_row, write_task_runs)

NEWS, EMO = own_task("news", 4), own_task("emo", 28, multi=True)
# Error rate on sst2 and quality on the own tasks (share right on news; signal strength on emo).
ROWS = {"teacher": (0.10, 0.95), "random_init": (0.40, 0.45), "c-default": (0.20, 0.80), "c-good": (0.15, 0.90),
        "c-bad": (0.30, 0.60), "c-majority": (0.25, 0.0)}
PROFILE = {"teacher": {"latency_ms_b1": 40.0, "latency_ms_b32": 30.0, "size_mb": 90.0},
           "student": {"latency_ms_b1": 21.0, "latency_ms_b32": 15.0, "size_mb": 45.0}}


def _sweep(out, glue=True, objectives=("tasks_macro",)):
    """teacher, random_init and four students on sst2 (unless not glue), news (400 examples) and
    emo (300 x 28); `c-majority` predicts news' majority class and nothing on emo."""
    spec = {**SPEC, "glue": {"include_wnli": True, "tasks": ["sst2"] if glue else []},
            "search": {**SPEC["search"], "objectives": list(objectives)}, "tasks": [asdict(NEWS), asdict(EMO)]}
    write_json(out / "spec.json", spec)
    sst2 = {"sst2": labels_for("sst2", 300)}
    news, emo = task_labels(NEWS, 400), task_labels(EMO, 300)
    for i, (name, (wrong, quality)) in enumerate(ROWS.items()):
        kind = "teacher" if name == "teacher" else "reference" if name == "random_init" else "student"
        where = out / ("teacher" if kind == "teacher" else "references" if kind == "reference" else "candidates") / \
            ("" if kind == "teacher" else name)
        news_logits = task_logits(NEWS, news[1], quality, seed=10 * i)
        if name == "c-majority":
            news_logits = np.tile(np.eye(4, dtype=np.float32)[2], (len(news[1]), 1))  # always class 2
        t = 2.0 if kind == "teacher" else 1.0  # the teacher takes twice as long to fine-tune
        emo_logits = task_logits(EMO, emo[1], quality, seed=10 * i + 1)
        runs = (write_task_runs(where, NEWS, news, {0: news_logits}, seconds=50.0 * t)
                + write_task_runs(where, EMO, emo, {0: emo_logits}, seconds=100.0 * t))
        params = DEFAULT_PARAMS if name == "c-default" else {**DEFAULT_PARAMS, "alpha_ce": 1.0 + i}
        preds = {"sst2": {0: noisy(sst2["sst2"][1], wrong, seed=i)}} if glue else {}
        result = write_row(where, kind, preds, sst2, params if kind == "student" else
                           {"model": "t"} if kind == "teacher" else {"layer_selection": name})
        result.update(glue=result["glue"] + runs, n_params=22_000_000 if kind == "teacher" else 11_000_000,
                      profile=PROFILE["teacher" if kind == "teacher" else "student"])
        write_json(where / "result.json", result)
        if kind == "student":
            write_json(where / "config.json", {"params": params, "started": float(i)})
    return out


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """(results dir, Board) of a sweep on sst2 + news + emo, ranked by tasks_macro."""
    out = _sweep(tmp_path_factory.mktemp("mixed"))
    return out, leaderboard.load(out, resamples=300)


def test_own_task_columns_follow_glue_and_tasks_macro_is_their_mean(mixed):
    out, board = mixed
    df = board.frame
    cols = list(df.columns)
    assert cols.index("mnli_mm") < cols.index("wnli") < cols.index("news") < cols.index("emo") < cols.index("n_params")
    assert (cols.index("delta_vs_default") < cols.index("tasks_macro") < cols.index("pct_teacher_tasks")
            < cols.index("p_best"))
    rows = df.set_index("model")
    for model, where in [("teacher", out / "teacher"), ("c-good", out / "candidates" / "c-good")]:
        news = np.mean(list(score_predictions(NEWS, pd.read_parquet(where / "predictions" / "news-seed0.parquet"))
                            .values()))
        emo = score_predictions(EMO, pd.read_parquet(where / "predictions" / "emo-seed0.parquet"))
        assert set(emo) == {"micro_f1", "macro_f1", "roc_auc"}
        assert rows.loc[model, "news"] == pytest.approx(news)
        assert rows.loc[model, "emo"] == pytest.approx(np.mean(list(emo.values())))
        assert rows.loc[model, "tasks_macro"] == pytest.approx((news + np.mean(list(emo.values()))) / 2)
        assert rows.loc[model, "macro_score"] == pytest.approx(rows.loc[model, "sst2"])  # the GLUE macro: GLUE only
    macro = rows["tasks_macro"]
    assert rows.loc["c-good", "pct_teacher_tasks"] == pytest.approx(100 * macro["c-good"] / macro["teacher"])
    assert rows.loc["c-good", "gain_over_random_init_tasks"] == pytest.approx(macro["c-good"] - macro["random_init"])
    assert rows.loc["c-good", "finetune_seconds_emo"] == 100.0 and rows.loc["teacher", "finetune_seconds_news"] == 100.0
    # Ranked by the first objective, tasks_macro; the best student is the best by it.
    assert board.rank_by == "tasks_macro" and df["tasks_macro"].is_monotonic_decreasing
    assert board.best_student()["model"] == "c-good"
    assert board.tasks == (NEWS, EMO) and board.glue_tasks == ("sst2",) and board.paper_defaults == "c-default"


def test_tasks_macro_intervals_contain_their_values_and_p_best_ranks_on_it(mixed):
    _, board = mixed
    assert board.bootstrap["excluded"] == {}  # every row's predictions reproduce its result.json, emo included
    rows = board.frame.set_index("model")
    for col in ["pct_teacher_tasks", "gain_over_random_init_tasks", "delta_vs_default_tasks", "pct_teacher",
                "delta_vs_default"]:
        done = rows[rows[col].notna()]
        assert len(done) == 6, col
        assert (done[col + "_lo"] <= done[col] + 1e-9).all() and (done[col] <= done[col + "_hi"] + 1e-9).all(), col
    assert rows.loc["teacher", "pct_teacher_tasks_lo"] == pytest.approx(100.0)
    assert (rows.loc["c-default", ["delta_vs_default_tasks_lo", "delta_vs_default_tasks_hi"]] == 0).all()
    assert rows.loc["c-good", "delta_vs_default_tasks_lo"] > 0 and rows.loc["c-bad", "delta_vs_default_tasks_hi"] < 0
    assert rows["p_best"].sum() == pytest.approx(1.0) and rows.loc["c-good", "p_best"] > 0.9
    # The board keeps the resampled scores the intervals came from: one (B,) per split of each row with intervals.
    assert set(board.resampled) == set(board.bootstrap["rows"]) and board.resampled["c-good"]["emo"].shape == (300,)


def test_full_sample_bootstrap_reproduces_score_predictions(mixed):
    """With W = all ones the vectorised metrics are score_predictions' (scikit-learn) on every
    row and both own tasks; the multi-label one recomputed from the saved probabilities."""
    out, _ = mixed
    dirs = {"teacher": out / "teacher", "c-bad": out / "candidates" / "c-bad",
            "c-majority": out / "candidates" / "c-majority"}
    splits, problems = confidence.load_splits(dirs, [NEWS, EMO])
    assert problems == {} and splits["emo"].labels.shape == (300, 28)
    assert splits["emo"].preds["teacher"].shape == (1, 300, 28)
    assert splits["emo"].position == splits["news"].position + 1 == len(score_columns()) + 1
    full = confidence.resampled_columns(splits, resamples=0)
    for model, where in dirs.items():
        for task in (NEWS, EMO):
            saved = pd.read_parquet(where / "predictions" / f"{task.name}-seed0.parquet")
            want = np.mean(list(score_predictions(task, saved).values()))
            assert full[model][task.name][0] == pytest.approx(want, abs=1e-9)


def test_chance_on_own_tasks_is_the_majority_class_and_all_negative(mixed):
    _, board = mixed
    chance = board.chance
    news_y = task_labels(NEWS, 400)[1]
    share = 100 * (news_y == 2).mean()
    f1 = 2 * share / (100 + share)  # the majority class's F1 (precision share, recall 1); the others 0
    assert chance["news"] == pytest.approx((share + 100 * f1 / 4) / 2)
    assert chance["emo"] == pytest.approx(50 / 3)  # micro-F1 0, macro-F1 0, ROC AUC 50 (constant)
    assert "all-negative" in board.chance_rule["emo"] and board.chance_rule["news"] == "always class 2"
    rows = board.frame.set_index("model")
    assert sorted(rows.loc["c-majority", "at_chance"].split()) == ["emo", "news"]
    assert rows.loc["teacher", "at_chance"] == ""
    table = summary.formatted(board).set_index("model")
    assert table.loc["c-majority", "emo"].endswith(summary.CHANCE_MARK)
    assert table.loc["chance (majority class)", "tasks_macro"] == f"{(chance['news'] + chance['emo']) / 2:.2f}"
    margins = summary.chance_margins(board, rows.loc["teacher"])
    assert set(margins) == {"sst2", "news", "emo"}
    assert margins["emo"] == pytest.approx(rows.loc["teacher", "emo"] - 50 / 3)


def test_comparison_teacher_vs_best_student_per_task(mixed):
    out, board = mixed
    rows = board.frame.set_index("model")
    comp = {(r["task"], r["role"]): r for r in board.comparison}
    assert set(comp) == {(t, r) for t in ("news", "emo") for r in ("teacher", "best student")}
    best = comp[("emo", "best student")]
    assert best["model"] == rows[rows["kind"] == "student"]["emo"].idxmax()
    assert best["score"] == pytest.approx(rows.loc[best["model"], "emo"])
    assert best["pct_teacher"] == pytest.approx(100 * best["score"] / rows.loc["teacher", "emo"])
    assert best["pct_teacher_lo"] <= best["pct_teacher"] <= best["pct_teacher_hi"]
    assert best["finetune_seconds"] == 100.0 and comp[("emo", "teacher")]["finetune_seconds"] == 200.0
    assert best["speedup_b32"] == pytest.approx(2.0) and best["speedup_b1"] == pytest.approx(40 / 21)
    assert best["params_ratio"] == pytest.approx(2.0) and best["finetune_speedup"] == pytest.approx(2.0)
    sentence = next(s for s in summary.comparison_sentences(board) if s.startswith("emo:"))
    assert f"`{best['model']}` reaches {best['pct_teacher']:.1f} % [" in sentence
    assert ("at 2.0× the speed (batch 32; 1.9× at batch 1), with 2.0× fewer parameters, fine-tuned in 0.50× the "
            "teacher's time") in sentence
    table = summary.comparison_table(board)
    assert list(table["task"]) == ["news", "news", "emo", "emo"] and table.loc[1, "speed-up b32"] == "2.00×"
    leaderboard.write(board, out)
    md = (out / "leaderboard.md").read_text()
    assert "### Teacher vs best student on each user task" in md and sentence in md
    page = report.write_html(board, out).read_text()
    assert "Teacher vs best student on each user task" in page and "fine-tune s (one run)" in page
    assert pd.read_parquet(out / "leaderboard.parquet").attrs["comparison"] == list(board.comparison)


def test_headline_ranks_by_the_objective_with_a_tasks_macro_and_a_glue_line(mixed):
    _, board = mixed
    df = board.frame
    head = summary.headline(board).splitlines()
    assert head[0].startswith("best student `c-good`: tasks_macro ") and "% of teacher [" in head[0]
    assert "vs paper defaults +" in head[0] and "better at 95 %" in head[0]
    assert head[1].startswith("user tasks: tasks_macro ") and "% of teacher [" in head[1]
    news = df.set_index("model")["news"]
    assert f"news {news['c-good']:.2f} (teacher {news['teacher']:.2f}), emo " in head[1]
    assert head[2].startswith("GLUE: macro ") and "% of teacher [" in head[2]
    assert head[3].startswith("gain over random_init +") and head[3].endswith("tasks_macro points")
    assert "(news +" in head[4] and "emo +" in head[4] and "at chance: best student" not in head[4]
    notes = " ".join(summary.conventions(board))
    assert "news (single-label, 4 classes; accuracy, macro_f1)" in notes
    assert "emo (multi-label, 28 labels, threshold 0.5" in notes
    assert "Ranked by tasks_macro" in notes and "emo 16.67 (all-negative" in notes


def test_a_sweep_without_glue_ranks_on_tasks_macro_and_hides_the_glue_columns(tmp_path):
    board = leaderboard.load(_sweep(tmp_path, glue=False, objectives=("macro_score",)), resamples=100)
    df = board.frame
    assert df["macro_score"].isna().all() and board.rank_by == "tasks_macro"  # nothing to rank on in the GLUE macro
    shown = list(summary.formatted(board).columns)
    assert "tasks_macro" in shown and "news" in shown
    assert not {"macro_score", "sst2", "pct_teacher", "gain_over_random_init"} & set(shown)
    assert report.score_columns_shown(board) == ["news", "emo"]
    md = summary.to_markdown(board)
    assert md.startswith("**best student `c-good`: tasks_macro") and "No GLUE task in this sweep" in md
    assert " nan" not in md
    card = export.model_card(board, "handmade", "t")
    assert "by tasks_macro:" in card and "| **tasks_macro** |" in card and "| emo |" in card and "| sst2 |" not in card


def test_a_single_task_column_can_be_the_ranking_objective(tmp_path):
    board = leaderboard.load(_sweep(tmp_path, objectives=("emo",)), resamples=100)
    df = board.frame
    assert board.rank_by == "emo" and df["emo"].is_monotonic_decreasing
    first = summary.headline(board).splitlines()[0]
    assert first.startswith(f"best student `{df[df['kind'] == 'student'].iloc[0]['model']}`: emo ")
    assert df["p_best"].notna().sum() == 4 and df["p_best"].sum() == pytest.approx(1.0)


# ---------------------------------------------------------------- spec: what search.objectives may name
@pytest.fixture(scope="module")
def task_dirs(tmp_path_factory):
    from tests.test_tasks import _copy

    tmp = tmp_path_factory.mktemp("dirs")
    return _copy(tmp, "news", "uci_news"), _copy(tmp, "emo", "goemotions")


def _load(tmp_path, task_dirs, objectives=None, glue_tasks=(), own=True):
    from distil.config.spec import load_spec
    from tests.test_tasks import _emo, _news, _spec

    path = _spec(tmp_path, [_news(task_dirs[0]), _emo(task_dirs[1])] if own else [], tasks=list(glue_tasks))
    if objectives is not None:
        raw = yaml.safe_load(path.read_text())
        raw["search"]["objectives"] = objectives
        if len(objectives) > 1:  # two objectives exclude early stopping (a spec error)
            raw["search"].pop("early_stopping", None)
        path.write_text(yaml.safe_dump(raw))
    return load_spec(path)


@pytest.mark.parametrize("objectives, glue_tasks, own, message", [
    (["tasks_macro"], ["rte"], False,
     r"search.objectives: .*tasks_macro is the macro over the spec's own tasks and it has none"),
    (["macro_score"], [], True, r"search.objectives: .*macro_score is the GLUE macro and glue.tasks is empty"),
    (["sst2"], ["rte"], True, r"search.objectives: the first must be a score to maximise: use one of "
                              r"\['macro_score', 'tasks_macro', 'rte', 'news', 'emo'\]; got 'sst2'"),
    (["n_params"], [], True,
     r"objectives: the first must be a score to maximise .* not the cost 'n_params'; put the cost second"),
])
def test_objectives_name_a_score_of_the_spec(tmp_path, task_dirs, objectives, glue_tasks, own, message):
    from distil.config.spec import SpecError

    with pytest.raises(SpecError, match=message):
        _load(tmp_path, task_dirs, objectives, glue_tasks, own)


def test_every_allowed_objective_is_a_value_of_the_trials_row(tmp_path, task_dirs):
    """A spec without GLUE optimises tasks_macro by default; every objective it may name is a
    finite value of row_from_result's row, which the sweep reports (result["objectives"])."""
    assert _load(tmp_path, task_dirs).search.objectives == ["tasks_macro"]
    spec = _load(tmp_path, task_dirs, ["mnli_m", "latency_ms_b1"], glue_tasks=["mnli", "sst2"])
    assert spec.quality_objectives() == ["macro_score", "tasks_macro", "sst2", "mnli_m", "mnli_mm", "news", "emo"]
    runs = [{"task": "sst2", "seed": 0, "scores": {"": {"accuracy": 80.0}}, "seconds": 1.0},
            {"task": "mnli", "seed": 0, "scores": {"_m": {"accuracy": 60.0}, "_mm": {"accuracy": 62.0}},
             "seconds": 1.0},
            {"task": "news", "seed": 0, "scores": {"": {"accuracy": 70.0, "macro_f1": 60.0}}, "seconds": 2.0},
            {"task": "emo", "seed": 0, "scores": {"": {"micro_f1": 30.0, "macro_f1": 10.0, "roc_auc": 80.0}},
             "seconds": 3.0}]
    row = scores.row_from_result({"glue": runs}, tasks=spec.tasks)
    assert {n: row[n] for n in spec.quality_objectives()} == pytest.approx(
        {"macro_score": (80 + 61) / 2, "tasks_macro": (65 + 40) / 2, "sst2": 80, "mnli_m": 60, "mnli_mm": 62,
         "news": 65, "emo": 40})


def test_a_proxy_run_on_an_own_task_has_a_task_score():
    """The early-stopping proxy averages runs' task scores: an own task's run scores too (the
    GLUE macro of it would be empty)."""
    from distil.evaluation.scores import task_score as _task_score

    emo = {"task": "emo", "seed": 0, "scores": {"": {"micro_f1": 30.0, "macro_f1": 10.0, "roc_auc": 80.0}}}
    mnli = {"task": "mnli", "seed": 0, "scores": {"_m": {"accuracy": 60.0}, "_mm": {"accuracy": 64.0}}}
    assert _task_score(emo) == pytest.approx(40.0) and _task_score(mnli) == pytest.approx(62.0)
    assert np.isnan(_task_score({"task": "emo", "seed": 0, "scores": {"": None}}))
