import json
import math
import shutil

import numpy as np
import pandas as pd
import pytest

from distil.evaluation import scores
from distil.report import leaderboard
from distil.report import summary


def _run(task, seed, **scores):
    return {"task": task, "seed": seed, "scores": scores, "subset_splits": []}


def test_macro_averages_metrics_within_tasks_and_splits_within_mnli():
    runs = [
        _run("mrpc", 0, **{"": {"f1": 80.0, "accuracy": 70.0}}),          # task score 75
        _run("mnli", 0, **{"_m": {"accuracy": 60.0}, "_mm": {"accuracy": 64.0}}),  # 62
        _run("wnli", 0, **{"": {"accuracy": 50.0}}),
    ]
    row = scores.row_from_result({"glue": runs})
    assert row["mrpc"] == 75.0 and row["mnli_m"] == 60.0 and row["mnli_mm"] == 64.0
    assert row["macro_score"] == pytest.approx((75 + 62 + 50) / 3)
    assert scores.row_from_result({"glue": runs}, include_wnli=False)["macro_score"] == pytest.approx((75 + 62) / 2)


def test_missing_mnli_mismatched_stays_empty_and_is_not_counted():
    runs = [_run("mnli", 0, **{"_m": {"accuracy": 60.0}, "_mm": None}), _run("sst2", 0, **{"": {"accuracy": 80.0}})]
    row = scores.row_from_result({"glue": runs})
    assert math.isnan(row["mnli_mm"])
    assert row["macro_score"] == pytest.approx(70.0)


def test_seeds_give_mean_and_std():
    runs = [_run("rte", s, **{"": {"accuracy": a}}) for s, a in [(0, 50.0), (1, 60.0), (2, 70.0)]]
    row = scores.row_from_result({"glue": runs})
    assert row["rte"] == 60.0 and row["rte_std"] == pytest.approx(10.0) and row["seeds"] == "0,1,2"


def test_load_ranks_by_macro_with_pct_of_teacher_and_keeps_incomplete_trials(tmp_path):
    from tests.handmade import write_json as write  # through distil.store.records, as the sweep writes

    def sst2(acc):
        return [_run("sst2", 0, **{"": {"accuracy": acc}})]

    write(tmp_path / "teacher" / "result.json", {"kind": "teacher", "params": {}, "glue": sst2(80.0), "n_params": 100})
    params = {"alpha_ce": 5.0, "alpha_mlm": 2.0, "alpha_cos": 1.0, "temperature": 2.0, "layer_selection": "every_other"}
    write(tmp_path / "candidates" / "a" / "result.json",
          {"params": params, "glue": sst2(60.0), "n_params": 50, "distill": {"loss": 3.0}})
    write(tmp_path / "candidates" / "b" / "result.json",
          {"params": params, "glue": sst2(72.0), "n_params": 50, "distill": {"loss": 2.0}})
    write(tmp_path / "candidates" / "c" / "config.json", {"params": params})  # killed mid-trial
    board = leaderboard.load(tmp_path)
    df = board.frame
    assert list(df["model"]) == ["teacher", "b", "a", "c"]
    assert list(df["status"]) == ["done", "done", "done", "incomplete"]
    assert df.loc[1, "pct_teacher"] == pytest.approx(90.0)
    assert "mnli_mm" in df.columns and df["mnli_mm"].isna().all()
    assert board.rank_by == "macro_score" and board.best_student()["model"] == "b"
    assert board.teacher()["model"] == "teacher"
    leaderboard.write(board, tmp_path)
    md = (tmp_path / "leaderboard.md").read_text()
    assert "| teacher" in md and "macro_score" in md and "nan" not in md


def test_reference_rows_give_gain_over_random_init_and_task_kd_has_no_macro(tmp_path):
    from tests.handmade import write_json as write  # through distil.store.records, as the sweep writes

    def sst2(acc):
        return [_run("sst2", 0, **{"": {"accuracy": acc}}), _run("rte", 0, **{"": {"accuracy": 50.0}})]

    write(tmp_path / "teacher" / "result.json", {"kind": "teacher", "params": {}, "glue": sst2(90.0)})
    write(tmp_path / "references" / "random_init" / "result.json",
          {"kind": "reference", "params": {"layer_selection": "random_init"}, "glue": sst2(50.0)})
    write(tmp_path / "references" / "task-kd-sst2" / "result.json",
          {"kind": "task_distill",
           "params": {"task": "sst2", "alpha_ce": 0.5, "temperature": 2.0, "layer_selection": "every_other"},
           "glue": [_run("sst2", 0, **{"": {"accuracy": 85.0}})]})
    write(tmp_path / "candidates" / "a" / "result.json", {"params": {"alpha_ce": 1.0}, "glue": sst2(80.0)})
    df = leaderboard.load(tmp_path).frame.set_index("model")
    assert df.loc["a", "macro_score"] == pytest.approx(65.0)  # (80 + 50) / 2
    assert df.loc["a", "gain_over_random_init"] == pytest.approx(15.0)  # 65 - (50 + 50) / 2
    assert df.loc["random_init", "gain_over_random_init"] == 0 and df.loc["random_init", "kind"] == "reference"
    kd = df.loc["task-kd-sst2"]
    assert kd["kind"] == "task_distill" and kd["sst2"] == 85.0 and pd.isna(kd["macro_score"]) and pd.isna(kd["rte"])
    assert list(leaderboard.load(tmp_path).frame["model"])[-1] == "task-kd-sst2"  # no macro: ranked last
    assert "random_init: the students' architecture" in summary.to_markdown(leaderboard.load(tmp_path))


def test_rows_of_two_widths_are_each_compared_with_the_reference_rows_of_their_own_width(tmp_path):
    # A teacher-width sweep's rows name no width (the teacher's, filled in from its config.json); a narrower
    # student's reference rows carry its shape in their names and are what its gains subtract.
    from tests.handmade import write_json as write

    def sst2(acc):
        return [_run("sst2", 0, **{"": {"accuracy": acc}})]

    teacher_dir = tmp_path / "teacher-model"
    teacher_dir.mkdir()
    (teacher_dir / "config.json").write_text(json.dumps({"num_hidden_layers": 6, "hidden_size": 384,
                                                         "num_attention_heads": 12, "intermediate_size": 1536}))
    narrow = {"n_layers": 2, "hidden_size": 192, "num_attention_heads": 12, "intermediate_size": 768}
    out = tmp_path / "out"
    write(out / "teacher" / "result.json",
          {"kind": "teacher", "params": {"model": str(teacher_dir)}, "glue": sst2(90.0)})
    for name, params, acc in [("mlm_only", {"layer_selection": "random_init", "n_layers": 2}, 60.0),
                              ("mlm_only-2L192H12F768", {"layer_selection": "random_init", **narrow}, 55.0),
                              ("init_only-first", {"layer_selection": "first", "n_layers": 2}, 70.0),
                              ("init_only-first-2L192H12F768", {"layer_selection": "first", **narrow}, 52.0)]:
        write(out / "references" / name / "result.json", {"kind": "reference", "params": params, "glue": sst2(acc)})
    write(out / "candidates" / "wide" / "result.json",
          {"params": {"alpha_ce": 1.0, "layer_selection": "first", "n_layers": 2}, "glue": sst2(80.0),
           "profile": {"latency_ms_b32": 1.0}, "n_params": 200})
    write(out / "candidates" / "narrow" / "result.json",
          {"params": {"alpha_ce": 1.0, "layer_selection": "first", **narrow, "alpha_relation": 1.0}, "glue": sst2(65.0),
           "profile": {"latency_ms_b32": 0.4}, "n_params": 100})
    write(out / "candidates" / "slow" / "result.json",  # slower than `wide` and no better: off the front
          {"params": {"alpha_ce": 2.0, "layer_selection": "first", **narrow}, "glue": sst2(64.0),
           "profile": {"latency_ms_b32": 1.5}, "n_params": 100})
    df = leaderboard.load(out, resamples=0).frame.set_index("model")
    assert df.loc["wide", "gain_over_mlm_only"] == 20.0 and df.loc["narrow", "gain_over_mlm_only"] == 10.0
    assert df.loc["wide", "gain_over_init"] == 10.0 and df.loc["narrow", "gain_over_init"] == 13.0
    assert not [c for c in df.columns if "2L192" in c]  # one gain column per kind of reference row
    assert df.loc["teacher", ["n_layers", "hidden_size", "heads", "ffn"]].tolist() == [6, 384, 12, 1536]
    assert df.loc["wide", ["n_layers", "hidden_size", "heads", "ffn"]].tolist() == [2, 384, 12, 1536]
    assert df.loc["narrow", ["n_layers", "hidden_size", "heads", "ffn"]].tolist() == [2, 192, 12, 768]
    columns = list(df.reset_index().columns)
    assert columns.index("ffn") + 1 == columns.index("n_params")  # the shape beside params and latency
    # A layer-wise term's weight is a column once a row uses it (beside the other alphas), 0 where a distilled
    # row's params omit it, empty for rows that were not distilled.
    assert columns.index("alpha_relation") == columns.index("alpha_mse") + 1 and "alpha_hidden" not in columns
    assert df.loc["narrow", "alpha_relation"] == 1.0 and df.loc["wide", "alpha_relation"] == 0.0
    assert pd.isna(df.loc["init_only-first", "alpha_relation"])
    # The Pareto front across shapes, in the markdown's head (the teacher has no latency here: not on it).
    assert summary.pareto_line(leaderboard.load(out, resamples=0)) == (
        "Pareto front of macro_score against CPU latency at batch 32 (ms per example), across shapes: "
        "wide [2L384H12F1536] 80.00 at 1.00 ms; narrow [2L192H12F768] 65.00 at 0.40 ms")


# ---------------------------------------------------------------- intervals, chance, headline
from tests.handmade import DEFAULT_PARAMS, SPEC, labels_for, noisy, write_json, write_row  # noqa: E402

SIZES = {"cola": 300, "sst2": 400, "stsb": 300, "rte": 200, "mnli_m": 300}
SMALL = {"cola", "stsb", "rte"}  # three seeds, as glue.seeds_on: small


def _sweep(tmp_path, quality: dict[str, float], majority: str | None = None):
    """teacher, random_init, mlm_only and students with error rate `quality[name]` on every split;
    the `majority` row predicts the majority class everywhere. The paper defaults are `c-default`."""
    data = {c: labels_for(c, n) for c, n in SIZES.items()}
    write_json(tmp_path / "spec.json", SPEC)
    for i, (name, wrong) in enumerate(quality.items()):
        preds = {}
        for c, (idx, y) in data.items():
            seeds = [0, 1, 2] if c in SMALL else [0]
            if name == majority:
                const = float(np.mean(y)) if y.dtype.kind == "f" else float(np.bincount(y).argmax())
                preds[c] = {s: np.full(len(y), const) for s in seeds}
            else:
                preds[c] = {s: noisy(y, wrong, seed=1000 * i + 10 * s + len(c)) for s in seeds}
        if name == "teacher":
            write_row(tmp_path / "teacher", "teacher", preds, data, {"model": "t"})
        elif name in ("random_init", "mlm_only"):
            write_row(tmp_path / "references" / name, "reference", preds, data, {"layer_selection": name})
        elif name == "paper_defaults":  # the sweep's own row (search.points_to_evaluate[0] run in full)
            write_row(tmp_path / "references" / name, "reference", preds, data, DEFAULT_PARAMS)
        else:
            params = (DEFAULT_PARAMS if name == "c-default"
                      else {**DEFAULT_PARAMS, "alpha_ce": 1.0 + i, "temperature": 3.0})
            write_row(tmp_path / "candidates" / name, "student", preds, data, params,
                      provenance={"spec_sha256": "s" * 8, "git_commit": "abc123", "teacher_sha256": "t" * 8,
                                  "data_sha256": {"/data/glue/sst2/validation.parquet": "d" * 8,
                                                  "/data/glue/rte/train.parquet": "e" * 8}})
            write_json(tmp_path / "candidates" / name / "config.json", {"params": params, "started": float(i)})
    return tmp_path


QUALITY = {"teacher": 0.10, "random_init": 0.40, "mlm_only": 0.30, "c-default": 0.20, "c-good": 0.15, "c-twin": 0.20}


def test_intervals_contain_the_leaderboard_values_and_pair_the_paper_defaults(tmp_path):
    board = leaderboard.load(_sweep(tmp_path, QUALITY), resamples=300)
    df = board.frame.set_index("model")
    assert board.bootstrap["excluded"] == {}
    assert board.bootstrap["paper_defaults"] == board.paper_defaults == "c-default"
    assert df["paper_defaults"].tolist().count(True) == 1 and df.loc["c-default", "paper_defaults"]
    for col in ["pct_teacher", "gain_over_random_init", "gain_over_mlm_only", "delta_vs_default"]:
        rows = df[df[col].notna()]
        assert len(rows) == 6 and (rows[col + "_lo"] <= rows[col] + 1e-9).all()
        assert (rows[col] <= rows[col + "_hi"] + 1e-9).all()
    # Against itself the difference is 0 on every resample; the teacher is 100 % of itself.
    assert (df.loc["c-default", ["delta_vs_default", "delta_vs_default_lo", "delta_vs_default_hi"]] == 0).all()
    assert df.loc["teacher", "pct_teacher_lo"] == pytest.approx(100.0)
    assert df.loc["mlm_only", "gain_over_mlm_only_hi"] == 0
    # 15 % vs 20 % wrong on ~1,500 examples: clearly better; p_best only for students, summing to 1.
    assert df.loc["c-good", "delta_vs_default_lo"] > 0 and df.loc["c-good", "p_best"] > 0.9
    assert df["p_best"].sum() == pytest.approx(1.0) and df.loc[["teacher", "mlm_only"], "p_best"].isna().all()
    assert df.loc["c-good", "gain_over_mlm_only_lo"] > 0


def test_headline_and_markdown_say_how_sure_the_order_is(tmp_path):
    board = leaderboard.load(_sweep(tmp_path, QUALITY), resamples=300)
    head = summary.headline(board)
    first = head.splitlines()[0]
    assert first.startswith("best student `c-good`: macro") and "% of teacher [" in first
    assert "% of the teacher's gain over chance [" in first and "on all 5 tasks" in first
    assert "vs paper defaults +" in first and "— better at 95 %" in first
    assert "mlm_only (the value of distillation) +" in head and "over random_init +" in head
    assert "3 fine-tuning seeds (0, 1, 2) on cola, stsb, rte, 1 on sst2, mnli" in head
    assert "clears the majority class by ≥ 5 points on 5 of 5 tasks" in head
    assert ("300 resamples, seed 0; not in it: seed noise on sst2, mnli (one seed) or distillation reruns"
            in head)
    leaderboard.write(board, tmp_path)
    md = (tmp_path / "leaderboard.md").read_text()
    assert md == summary.to_markdown(board)
    assert md.startswith("**best student `c-good`") and "c-default (paper defaults)" in md
    assert "| chance (majority class)" in md
    assert ("[lo, hi]: 95 % percentile interval, paired multi-bootstrap over validation examples and fine-tuning "
            "seeds" in md)
    assert "It does not cover seed noise on tasks a row ran on one seed (sst2, mnli: nothing to resample" in md
    assert "retention_over_chance = 100 · (M(row) − M(chance)) / (M(teacher) − M(chance))" in md
    assert "Provenance: spec_sha256: ssssssss; git_commit: abc123; teacher_sha256: tttttttt." in md
    assert "Data sha256 (under /data/glue): rte/train.parquet eeeeeeee; sst2/validation.parquet dddddddd." in md
    assert " nan" not in md
    back = pd.read_parquet(tmp_path / "leaderboard.parquet")  # the sweep-wide facts travel in its attrs
    assert back.attrs["bootstrap"]["resamples"] == 300 and set(back.attrs["chance"]) == set(SIZES)
    assert back.attrs["rank_by"] == "macro_score" and back.attrs["bootstrap"] == board.bootstrap
    pd.testing.assert_frame_equal(back, board.frame)


def test_a_majority_class_model_is_flagged_at_chance(tmp_path):
    board = leaderboard.load(_sweep(tmp_path, {**QUALITY, "c-majority": 0.0}, majority="c-majority"), resamples=50)
    df = board.frame
    row = df.set_index("model").loc["c-majority"]
    # Every split, the constant stsb (0) and cola MCC (0) included.
    assert sorted(row["at_chance"].split()) == sorted(SIZES)
    for c in SIZES:
        assert row[c] == pytest.approx(board.chance[c])
    assert df.set_index("model").loc["teacher", "at_chance"] == ""
    table = summary.formatted(board).set_index("model")
    assert table.loc["c-majority", "sst2"].endswith(summary.CHANCE_MARK)
    assert not table.loc["teacher", "sst2"].endswith(summary.CHANCE_MARK)
    assert table.loc["chance (majority class)", "sst2"] == f"{board.chance['sst2']:.2f}"
    assert summary.chance_margins(board, df.set_index("model").loc["c-majority"]) == pytest.approx(
        {"cola": 0, "sst2": 0, "stsb": 0, "mnli": 0, "rte": 0})


def test_best_is_the_paper_defaults_and_rows_without_matching_predictions_get_no_interval(tmp_path):
    out = _sweep(tmp_path, {"teacher": 0.1, "c-default": 0.12, "c-other": 0.3})
    result = json.loads((out / "candidates" / "c-other" / "result.json").read_text())
    result["glue"][0]["scores"][""] = {"mcc": 99.0}  # no longer what its predictions score
    write_json(out / "candidates" / "c-other" / "result.json", result)
    write_json(out / "candidates" / "c-stopped" / "status.json",
               {"status": "stopped", "rung": 1, "proxy_score": 3.5, "reason": "ASHA"})
    board = leaderboard.load(out, resamples=100)
    assert "reproduce" in board.bootstrap["excluded"]["c-other"]
    rows = board.frame.set_index("model")
    assert pd.isna(rows.loc["c-other", "delta_vs_default_lo"]) and pd.notna(rows.loc["c-other", "delta_vs_default"])
    assert rows.loc["c-stopped", "status"] == "stopped" and rows.loc["c-stopped", "rung"] == 1
    head = summary.headline(board)
    assert head.startswith("best student `c-default` (paper defaults)") and "vs the next best `c-other` +" in head
    assert "no interval" in head.splitlines()[0]
    notes = " ".join(summary.conventions(board))
    assert "No intervals for c-other (its predictions do not reproduce" in notes and "stopped early" in notes


def test_the_paper_defaults_reference_row_is_what_every_candidate_is_compared_with(tmp_path):
    """The sweep's `paper_defaults` row (references/, kind reference): delta_vs_default subtracts it,
    it is no student (no p_best, never the best student) and no gain_over_<ref> column of its own."""
    quality = {"teacher": 0.10, "random_init": 0.40, "paper_defaults": 0.20, "c-good": 0.15, "c-worse": 0.25}
    board = leaderboard.load(_sweep(tmp_path, quality), resamples=200)
    df = board.frame.set_index("model")
    assert board.paper_defaults == "paper_defaults" == board.bootstrap["paper_defaults"]
    assert df.loc["paper_defaults", "kind"] == "reference" and df.loc["paper_defaults", "paper_defaults"]
    assert not any(c.startswith("gain_over_paper_defaults") for c in df.columns)
    assert df.loc["c-good", "delta_vs_default"] == pytest.approx(
        df.loc["c-good", "macro_score"] - df.loc["paper_defaults", "macro_score"])
    assert df.loc["c-good", "delta_vs_default_lo"] > 0 > df.loc["c-worse", "delta_vs_default_hi"]
    assert pd.isna(df.loc["paper_defaults", "p_best"]) and df["p_best"].sum() == pytest.approx(1.0)
    first = summary.headline(board).splitlines()[0]
    assert first.startswith("best student `c-good`: macro") and "vs paper defaults +" in first
    notes = " ".join(summary.conventions(board))
    assert "paper_defaults: the spec's search.points_to_evaluate[0] (the paper's settings) distilled" in notes
    assert "gain_over_paper_defaults" not in notes
    md = summary.to_markdown(board)
    assert "| paper_defaults " in md and "(paper defaults)" not in md
    # Interrupted before the row finished: the headline says so instead of comparing.
    shutil.rmtree(tmp_path / "references" / "paper_defaults")
    first = summary.headline(leaderboard.load(tmp_path, resamples=0)).splitlines()[0]
    assert first.endswith("; the paper_defaults row has not finished (no comparison with the paper defaults yet)")


def test_paper_defaults_are_the_labelled_trial_else_the_params_matching_points_to_evaluate():
    paper = {**DEFAULT_PARAMS, "n_layers": 3}
    other = {**paper, "alpha_ce": 1.0}
    cands = {"x": {"params": other, "done": True, "started": 1.0},
             "y": {"params": paper, "done": False, "started": 0.0},
             "z": {"params": {**paper, "layer_selection": "every_other"}, "done": True, "started": 2.0}}
    # Matched on params (an older sweep without labels): the done match first, then the earliest start.
    assert leaderboard.paper_default_model(cands, SPEC) == "z"
    # A list layer selection in the spec matches its canonical key; a different fixed value does not match.
    point = {"alpha_ce": 1.0, "temperature": 2.0, "layer_selection": [0, 2, 4]}
    spec = {"search": {**SPEC["search"], "points_to_evaluate": [point]}}
    assert leaderboard.paper_default_model({"w": {"params": {**other, "layer_selection": "0,2,4"}}}, spec) == "w"
    fixed_differs = {**other, "layer_selection": "0,2,4", "alpha_mlm": 9.0}
    assert leaderboard.paper_default_model({"w": {"params": fixed_differs}}, spec) is None
    # The sweep's own label wins; no points_to_evaluate and no label: none.
    assert leaderboard.paper_default_model({**cands, "x": {**cands["x"], "label": "paper defaults"}}, SPEC) == "x"
    assert leaderboard.paper_default_model(cands, {"search": {**SPEC["search"], "points_to_evaluate": []}}) is None


# ---------------------------------------------------------------- the report modules' shape
REPORT_ORDER = ["board", "summary", "leaderboard", "html", "export"]  # each imports only those before it


def _report_imports(name: str) -> tuple[set[str], list]:
    """(the distil.report modules `name` imports, at any depth of the file; its `.attrs` nodes)."""
    import ast
    from pathlib import Path

    import distil.report

    tree = ast.parse((Path(distil.report.__file__).parent / f"{name}.py").read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "distil.report":
            imported |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("distil.report."):
            imported.add(node.module.split(".")[2])
        elif isinstance(node, ast.Import):
            imported |= {a.name.split(".")[2] for a in node.names if a.name.startswith("distil.report.")}
    return imported, [n for n in ast.walk(tree) if isinstance(n, ast.Attribute) and n.attr == "attrs"]


def test_report_modules_import_one_way_and_read_no_frame_attrs():
    import ast
    import pkgutil

    import distil.report

    assert sorted(m.name for m in pkgutil.iter_modules(distil.report.__path__)) == sorted(REPORT_ORDER)
    for i, name in enumerate(REPORT_ORDER):
        imported, attrs = _report_imports(name)
        assert imported <= set(REPORT_ORDER[:i]), f"{name} imports {sorted(imported - set(REPORT_ORDER[:i]))}"
        # The sweep-wide facts are Board fields; `.attrs` is only set, once, for what the parquet file keeps.
        assert all(isinstance(n.ctx, ast.Store) for n in attrs), f"{name} reads .attrs"
    assert sum(len(_report_imports(name)[1]) for name in REPORT_ORDER) == 1  # leaderboard.write


# ---------------------------------------------------------------- retention over chance, one finished student
def _tiny_sweep(out, rows: dict[str, dict[str, int]]):
    """sst2 (20 examples, 12 of class 0: chance 60 %), qnli (20, 10/10: chance 50 %) and rte (50,
    25/25: chance 50 %); rows: {model: {column: examples predicted right}} (the first ones wrong), one
    seed; the model `teacher` is the teacher, the others candidates with the paper defaults' params."""
    data = {"sst2": (np.arange(20), (np.arange(20) >= 12).astype(int)),
            "qnli": (np.arange(20), np.arange(20) % 2), "rte": (np.arange(50), np.arange(50) % 2)}
    write_json(out / "spec.json", SPEC)
    for name, right in rows.items():
        preds = {c: {0: np.where(np.arange(len(y)) < len(y) - right[c], 1 - y, y)} for c, (_, y) in data.items()}
        if name == "teacher":
            write_row(out / "teacher", "teacher", preds, data, {"model": "t"})
        else:
            write_row(out / "candidates" / name, "student", preds, data, DEFAULT_PARAMS)
            write_json(out / "candidates" / name / "config.json", {"params": DEFAULT_PARAMS, "started": 0.0})
    return out


def test_retention_over_chance_leaves_out_tasks_the_teacher_does_not_clear_and_matches_a_hand_computation(tmp_path):
    """The teacher: sst2 90 (chance 60), qnli 90 (50), rte 54 (50: within 5 points, left out). The
    student: 75, 60, 60. Retention = 100 · ((75 - 60) + (60 - 50)) / ((90 - 60) + (90 - 50)) = 35.71 %
    on sst2 and qnli (not the mean of the per-task 50 % and 25 %, and not rte's 250 %), while
    pct_teacher = 65 / 78 = 83.3 %."""
    out = _tiny_sweep(tmp_path, {"teacher": {"sst2": 18, "qnli": 18, "rte": 27},
                                 "c-a": {"sst2": 15, "qnli": 12, "rte": 30}})
    board = leaderboard.load(out, resamples=400)
    assert board.chance == pytest.approx({"sst2": 60.0, "qnli": 50.0, "rte": 50.0})
    assert board.retention == {"macro_score": {"tasks": ["sst2", "qnli"], "left_out": pytest.approx({"rte": 4.0})}}
    rows = board.frame.set_index("model")
    assert rows.loc["c-a", "retention_over_chance"] == pytest.approx(100 * 25 / 70)
    assert rows.loc["c-a", "pct_teacher"] == pytest.approx(100 * 65 / 78)
    assert rows.loc["c-a", "retention_sst2"] == pytest.approx(50.0) and rows.loc["c-a", "retention_qnli"] == 25.0
    assert "retention_rte" not in rows or pd.isna(rows.loc["c-a", "retention_rte"])
    assert rows.loc["teacher", "retention_over_chance"] == 100.0
    assert rows.loc["teacher", "retention_over_chance_lo"] == rows.loc["teacher", "retention_over_chance_hi"] == 100.0
    lo, hi = rows.loc["c-a", ["retention_over_chance_lo", "retention_over_chance_hi"]]
    assert lo < 100 * 25 / 70 < hi and hi - lo > 5  # 20 examples a split: a wide interval
    first = summary.headline(board).splitlines()[0]
    assert "35.7 % of the teacher's gain over chance [" in first
    assert "without rte (teacher < 5 points above chance); 83.3 % of teacher [" in first
    notes = " ".join(summary.conventions(board))
    assert "over the tasks where the teacher clears the majority class by ≥ 5 points (sst2, qnli)" in notes
    assert "left out (teacher within 5 points of chance): rte +4.0" in notes
    cols = list(board.frame.columns)
    assert cols.index("pct_teacher") < cols.index("retention_over_chance") < cols.index("gain_over_random_init")
    table = summary.formatted(board)
    assert "retention_over_chance" in table and "retention_sst2" not in table  # per task: csv and parquet only


def test_a_single_finished_student_gets_no_p_best_and_no_first_in_resamples(tmp_path):
    out = _tiny_sweep(tmp_path, {"teacher": {"sst2": 18, "qnli": 18, "rte": 40},
                                 "c-a": {"sst2": 15, "qnli": 12, "rte": 30}})
    write_json(out / "candidates" / "c-stopped" / "status.json", {"status": "stopped", "rung": 0, "reason": "ASHA"})
    board = leaderboard.load(out, resamples=200)
    assert board.frame["p_best"].isna().all() and board.bootstrap["students"] == 1
    head = summary.headline(board)
    assert "first in" not in head and "it is the only finished student" in head.splitlines()[0]
    assert "p_best" not in " ".join(summary.conventions(board))
    # The teacher now clears every task: retention is over all three, the headline says so.
    assert board.retention["macro_score"] == {"tasks": ["sst2", "qnli", "rte"], "left_out": {}}
    assert "% of the teacher's gain over chance [" in head and "on all 3 tasks" in head
    # A second finished student brings p_best back.
    _tiny_sweep(out, {"c-b": {"sst2": 16, "qnli": 12, "rte": 30}})
    board = leaderboard.load(out, resamples=200)
    assert board.frame["p_best"].notna().sum() == 2 and board.frame["p_best"].sum() == pytest.approx(1.0)
    assert "first in" in summary.headline(board)


def test_a_row_distilled_twice_has_its_runs_in_the_interval_and_the_notes_say_so(tmp_path):
    """The layout a confirmation stage would write: predictions/run0/ and run1/, result.json with the
    fine-tuning runs of both (balanced, so its seed mean is the mean over runs of each run's mean). The
    row keeps its intervals; the notes and the headline say whose distillation noise is in them."""
    out = _tiny_sweep(tmp_path, {"teacher": {"sst2": 18, "qnli": 18, "rte": 40},
                                 "c-a": {"sst2": 15, "qnli": 12, "rte": 30}})
    runs = []
    for r, right in enumerate([{"sst2": 16, "qnli": 14, "rte": 33}, {"sst2": 13, "qnli": 11, "rte": 28}]):
        scratch = _tiny_sweep(tmp_path / f"scratch{r}", {"c-r": right})
        target = out / "candidates" / "c-r" / "predictions"
        target.mkdir(parents=True, exist_ok=True)
        shutil.move(scratch / "candidates" / "c-r" / "predictions", target / f"run{r}")
        runs += json.loads((scratch / "candidates" / "c-r" / "result.json").read_text())["glue"]
    params = {**DEFAULT_PARAMS, "alpha_ce": 1.0}  # not the paper defaults: c-a is
    write_json(out / "candidates" / "c-r" / "result.json", {"kind": "student", "params": params, "glue": runs})
    write_json(out / "candidates" / "c-r" / "config.json", {"params": params, "started": 1.0})
    board = leaderboard.load(out, resamples=200)
    assert board.bootstrap["excluded"] == {} and board.bootstrap["rerun_rows"] == {"c-r": 2}
    assert board.paper_defaults == "c-a"
    rows = board.frame.set_index("model")
    assert rows.loc["c-r", "sst2"] == pytest.approx(100 * (16 + 13) / 40)  # the mean over the two runs
    assert rows.loc["c-r", "delta_vs_default_lo"] < rows.loc["c-r", "delta_vs_default"] < rows.loc[
        "c-r", "delta_vs_default_hi"]
    assert "distillation-run noise of the rows distilled once (c-r, distilled 2 times, have theirs in" in " ".join(
        summary.conventions(board))
    assert summary.headline(board).endswith("(one seed) or distillation reruns of the rows distilled once")
