import json
import math

import pandas as pd
import pytest

from distil import leaderboard


def _run(task, seed, **scores):
    return {"task": task, "seed": seed, "scores": scores, "subset_splits": []}


def test_macro_averages_metrics_within_tasks_and_splits_within_mnli():
    runs = [
        _run("mrpc", 0, **{"": {"f1": 80.0, "accuracy": 70.0}}),          # task score 75
        _run("mnli", 0, **{"_m": {"accuracy": 60.0}, "_mm": {"accuracy": 64.0}}),  # 62
        _run("wnli", 0, **{"": {"accuracy": 50.0}}),
    ]
    row = leaderboard.row_from_result({"glue": runs})
    assert row["mrpc"] == 75.0 and row["mnli_m"] == 60.0 and row["mnli_mm"] == 64.0
    assert row["macro_score"] == pytest.approx((75 + 62 + 50) / 3)
    assert leaderboard.row_from_result({"glue": runs}, include_wnli=False)["macro_score"] == pytest.approx((75 + 62) / 2)


def test_missing_mnli_mismatched_stays_empty_and_is_not_counted():
    runs = [_run("mnli", 0, **{"_m": {"accuracy": 60.0}, "_mm": None}), _run("sst2", 0, **{"": {"accuracy": 80.0}})]
    row = leaderboard.row_from_result({"glue": runs})
    assert math.isnan(row["mnli_mm"])
    assert row["macro_score"] == pytest.approx(70.0)


def test_seeds_give_mean_and_std():
    runs = [_run("rte", s, **{"": {"accuracy": a}}) for s, a in [(0, 50.0), (1, 60.0), (2, 70.0)]]
    row = leaderboard.row_from_result({"glue": runs})
    assert row["rte"] == 60.0 and row["rte_std"] == pytest.approx(10.0) and row["seeds"] == "0,1,2"


def test_load_ranks_by_macro_with_pct_of_teacher_and_keeps_incomplete_trials(tmp_path):
    def write(path, obj):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(obj))

    write(tmp_path / "teacher" / "result.json", {"kind": "teacher", "params": {}, "glue": [_run("sst2", 0, **{"": {"accuracy": 80.0}})], "n_params": 100})
    params = {"alpha_ce": 5.0, "alpha_mlm": 2.0, "alpha_cos": 1.0, "temperature": 2.0, "layer_selection": "every_other"}
    write(tmp_path / "candidates" / "a" / "result.json", {"params": params, "glue": [_run("sst2", 0, **{"": {"accuracy": 60.0}})], "n_params": 50, "distill": {"loss": 3.0}})
    write(tmp_path / "candidates" / "b" / "result.json", {"params": params, "glue": [_run("sst2", 0, **{"": {"accuracy": 72.0}})], "n_params": 50, "distill": {"loss": 2.0}})
    write(tmp_path / "candidates" / "c" / "config.json", {"params": params})  # killed mid-trial
    df = leaderboard.load(tmp_path)
    assert list(df["model"]) == ["teacher", "b", "a", "c"]
    assert list(df["status"]) == ["done", "done", "done", "incomplete"]
    assert df.loc[1, "pct_teacher"] == pytest.approx(90.0)
    assert "mnli_mm" in df.columns and df["mnli_mm"].isna().all()
    leaderboard.write(df, tmp_path)
    md = (tmp_path / "leaderboard.md").read_text()
    assert "| teacher" in md and "macro_score" in md and "nan" not in md


def test_reference_rows_give_gain_over_random_init_and_task_kd_has_no_macro(tmp_path):
    def write(path, obj):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(obj))

    sst2 = lambda acc: [_run("sst2", 0, **{"": {"accuracy": acc}}), _run("rte", 0, **{"": {"accuracy": 50.0}})]
    write(tmp_path / "teacher" / "result.json", {"kind": "teacher", "params": {}, "glue": sst2(90.0)})
    write(tmp_path / "references" / "random_init" / "result.json",
          {"kind": "reference", "params": {"layer_selection": "random_init"}, "glue": sst2(50.0)})
    write(tmp_path / "references" / "task-kd-sst2" / "result.json",
          {"kind": "task_distill", "params": {"task": "sst2", "alpha_ce": 0.5, "temperature": 2.0, "layer_selection": "every_other"},
           "glue": [_run("sst2", 0, **{"": {"accuracy": 85.0}})]})
    write(tmp_path / "candidates" / "a" / "result.json", {"params": {"alpha_ce": 1.0}, "glue": sst2(80.0)})
    df = leaderboard.load(tmp_path).set_index("model")
    assert df.loc["a", "macro_score"] == pytest.approx(65.0)  # (80 + 50) / 2
    assert df.loc["a", "gain_over_random_init"] == pytest.approx(15.0)  # 65 - (50 + 50) / 2
    assert df.loc["random_init", "gain_over_random_init"] == 0 and df.loc["random_init", "kind"] == "reference"
    kd = df.loc["task-kd-sst2"]
    assert kd["kind"] == "task_distill" and kd["sst2"] == 85.0 and pd.isna(kd["macro_score"]) and pd.isna(kd["rte"])
    assert list(leaderboard.load(tmp_path)["model"])[-1] == "task-kd-sst2"  # no macro: ranked last
    assert "random_init: the students' architecture" in leaderboard.to_markdown(leaderboard.load(tmp_path))
