"""Profile, leaderboard extras, html report and export, on a small hand-made results dir with a
real (tiny) student distilled-initialised from the real teacher."""

import base64
import io
import math
import re
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib import image as mpimg
from matplotlib import pyplot as plt

from distil.report import export
from distil.evaluation.scores import PROFILE_COLUMNS
from distil.report import leaderboard
from distil.report import html as report
from distil.report import summary
from distil.evaluation.profile import measure
from distil.science.student import build_student
from tests.conftest import GLUE

PARAMS = {"alpha_ce": 5.0, "alpha_mlm": 2.0, "alpha_cos": 1.0, "temperature": 2.0, "layer_selection": "first"}


def _glue(sst2, seconds=10.0):
    """Two GLUE runs: sst2 at `sst2`, mnli matched only (mismatched missing, as offline)."""
    return [{"task": "sst2", "seed": 0, "scores": {"": {"accuracy": sst2}}, "subset_splits": [], "seconds": seconds},
            {"task": "mnli", "seed": 0, "scores": {"_m": {"accuracy": 40.0}, "_mm": None}, "subset_splits": [],
             "seconds": 5.0}]


def _write(path, obj):
    from tests.handmade import write_json  # through distil.store.records, as the sweep writes

    write_json(path, obj)


@pytest.fixture(scope="module")
def student_dir(tmp_path_factory, teacher, tokenizer):
    """A 1-layer student built from the real teacher, saved as the sweep saves it."""
    out = tmp_path_factory.mktemp("student")
    build_student(teacher, 1, "first").save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def measured(student_dir):
    """(profile, torch threads before, torch threads after) of one `measure` call, with a spec's
    `profile:` settings shorter than the defaults (what a tiny sweep sets)."""
    before = torch.get_num_threads()
    profile = measure(str(student_dir), "student", data=str(GLUE), seq_len=64, rounds=3, repeats_b1=4, repeats_b32=2)
    return profile, before, torch.get_num_threads()


@pytest.fixture(scope="module")
def student_profile(measured):
    return measured[0]


@pytest.fixture(scope="module")
def results_dir(tmp_path_factory, student_dir, student_profile):
    """teacher (best macro, hand profile), done students a (real student + profile) and b (no
    profile: an older result), c killed mid-trial. Start order: c, a, b."""
    out = tmp_path_factory.mktemp("results")
    _write(out / "teacher" / "result.json",
           {"kind": "teacher", "params": {"model": "the-teacher"}, "glue": _glue(80.0), "n_params": 22_000_000,
            "finetune_seconds": 15.0, "profile": {"size_mb": 90.0, "latency_ms_b1": 40.0, "latency_ms_b32": 30.0}})
    _write(out / "candidates" / "a" / "result.json",
           {"kind": "student", "params": PARAMS, "glue": _glue(70.0), "n_params": 11_000_000, "distill": {"loss": 2.0},
            "profile": student_profile, "finetune_seconds": 15.0})
    _write(out / "candidates" / "b" / "result.json",
           {"kind": "student", "params": PARAMS, "glue": _glue(60.0), "n_params": 11_000_000, "distill": {"loss": 3.0}})
    for name, started in [("c", 100.0), ("a", 200.0), ("b", 300.0)]:
        _write(out / "candidates" / name / "config.json", {"params": PARAMS, "started": started})
    shutil.copytree(student_dir, out / "candidates" / "a" / "student")
    return out


def test_pareto_front_hand_case():
    cost = [1, 2, 3, 2, 4, np.nan, 5]
    score = [50, 60, 55, 60, 70, 99, 70]
    # (3, 55) loses to (2, 60); the tie (2, 60) twice: neither beats the other; NaN never on it;
    # (5, 70) loses to (4, 70) on cost alone.
    assert report.pareto_front(cost, score).tolist() == [True, True, False, True, True, False, False]


def test_pareto_front_ignores_latency_differences_inside_the_timing_spread():
    # Three students of one architecture timed at 15.0, 17.7 and 16.0 ms, each round spread
    # overlapping the others: one cost, so only the best macro (b) is on the front, not the
    # cheapest-looking a; the teacher (40 ms, clearly apart) stays on it with the best macro.
    latency = [15.0, 17.7, 16.0, 40.0]
    lo, hi = [14.0, 15.5, 15.0, 38.0], [16.5, 18.5, 17.0, 42.0]
    macro = [47.0, 47.8, 46.5, 49.0]
    assert report.pareto_front(latency, macro).tolist() == [True, True, False, True]  # as timed: noise on the front
    assert report.pareto_front(latency, macro, lo, hi).tolist() == [False, True, False, True]
    # Without a spread (an older result) the same architecture (n_params) still makes one point.
    same = [11e6, 11e6, 11e6, 22e6]
    assert report.pareto_front(latency, macro, same=same).tolist() == [False, True, False, True]
    # Spreads that do not overlap: a real difference, both on the front.
    assert report.pareto_front([10.0, 20.0], [1.0, 2.0], [9.0, 19.0], [11.0, 21.0]).tolist() == [True, True]


def test_profile_of_tiny_student(student_dir, measured):
    p, threads_before, threads_after = measured
    assert p["latency_ms_b1"] > 0 and p["latency_ms_b32"] > 0
    assert p["latency_ms_b32"] < 4 * p["latency_ms_b1"]  # per example: batching must not be much worse
    assert p["size_mb"] == pytest.approx((student_dir / "model.safetensors").stat().st_size / 1e6)
    assert p["torch_threads"] == 1 and p["seq_len"] == 64 and p["kind"] == "student"
    for b in ("b1", "b32"):  # the spread over the 3 timing rounds brackets the median
        assert 0 < p[f"latency_ms_{b}_min"] <= p[f"latency_ms_{b}"] <= p[f"latency_ms_{b}_max"]
    assert p["rounds"] == 3 and p["repeats_b1"] == 4 and p["repeats_b32"] == 2
    assert threads_after == threads_before  # the measurement's 1 thread is not left behind


def test_load_adds_profile_finetune_and_trial_order(results_dir, student_profile):
    board = leaderboard.load(results_dir)
    df = board.frame.set_index("model")
    assert df.loc["a", "latency_ms_b32"] == pytest.approx(student_profile["latency_ms_b32"])
    assert df.loc["teacher", "size_mb"] == 90.0 and df.loc["a", "finetune_seconds"] == 15.0
    assert all(math.isnan(df.loc["b", c]) for c in ["size_mb", "latency_ms_b1", "latency_ms_b32", "finetune_seconds"])
    assert df.loc["c", "trial_index"] == 0 and df.loc["a", "trial_index"] == 1 and df.loc["b", "trial_index"] == 2
    assert pd.isna(df.loc["teacher", "trial_index"])
    leaderboard.write(board, results_dir)
    back = pd.read_parquet(results_dir / "leaderboard.parquet")
    assert list(back.columns) == list(board.frame.columns) and len(back) == 4
    assert {"leaderboard.csv", "leaderboard.md"} <= {p.name for p in results_dir.iterdir()}


def test_report_html_embeds_three_decodable_plots(results_dir):
    board = leaderboard.load(results_dir)
    page = report.write_html(board, results_dir).read_text()
    embedded = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(embedded) >= 3
    for data in embedded:
        assert min(mpimg.imread(io.BytesIO(base64.b64decode(data)), format="png").shape[:2]) > 100
    for name in ["scores", "pareto", "progress"]:
        assert min(mpimg.imread(results_dir / "plots" / f"{name}.png").shape[:2]) > 100
    assert "<table" in page and ">teacher<" in page and "mnli_mm" in page
    assert "macro_score = mean of task scores" in page
    assert page.index('<div class="headline"><p>best student `a`: macro 55.00') < page.index("<table")


def test_report_marks_chance_and_paper_defaults(tmp_path):
    from tests.test_leaderboard import QUALITY, _sweep

    out = _sweep(tmp_path, {**QUALITY, "c-majority": 0.0}, majority="c-majority")
    board = leaderboard.load(out, resamples=50)
    page = report.write_html(board, out).read_text()
    assert "chance (majority class)" in page and "c-default (paper defaults)" in page
    assert f"{board.chance['sst2']:.2f}{summary.CHANCE_MARK}" in page  # the majority-class model's cell
    assert "vs paper defaults" in page and "No intervals" not in page


def test_latency_panel_says_so_when_nothing_was_profiled(results_dir):
    board = leaderboard.load(results_dir)
    board.frame[PROFILE_COLUMNS] = math.nan  # as in a sweep run before profiling existed
    fig, ax = plt.subplots()
    report._pareto_panel(ax, board, "latency_ms_b32", "latency", "ms")
    assert any("no latency data" in t.get_text() for t in ax.texts)
    plt.close(fig)


def test_export_best_done_student_loads_offline_with_its_card(results_dir, student_dir):
    from transformers import AutoModelForMaskedLM, AutoModelForSequenceClassification, AutoTokenizer

    board = leaderboard.load(results_dir)  # the teacher has the best macro; the export must be a student
    out = export.export_best(board, results_dir)
    assert out == results_dir / "best_student"
    mlm = AutoModelForMaskedLM.from_pretrained(out, local_files_only=True)
    clf = AutoModelForSequenceClassification.from_pretrained(out, num_labels=2, local_files_only=True)
    assert clf.config.num_labels == 2
    AutoTokenizer.from_pretrained(out, local_files_only=True)
    saved = AutoModelForMaskedLM.from_pretrained(student_dir, local_files_only=True)
    assert torch.equal(mlm.distilbert.transformer.layer[0].ffn.lin1.weight,
                       saved.distilbert.transformer.layer[0].ffn.lin1.weight)
    card = (out / "README.md").read_text()
    assert "`a`" in card and "| alpha_ce | 5.0 |" in card and "| layer_selection | first |" in card
    # sst2 70 vs the teacher's 80: 87.5 %; macro (70+40)/2 = 55 vs (80+40)/2 = 60: 91.7 %
    assert "| sst2 | 70.00 | 80.00 | 87.5 |" in card
    assert "| **macro_score** | 55.00 | 60.00 | 91.7 |" in card
    assert "| mnli_mm |  |  |  |" in card


def test_export_swaps_in_only_a_complete_copy(results_dir, tmp_path):
    board = leaderboard.load(results_dir)
    out = export.export_best(board, results_dir)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    # The best student's files are gone (e.g. a candidates/ dir cleaned up): the export fails and
    # the previous best_student/ stays as it was.
    moved = tmp_path / "moved"
    shutil.move(results_dir / "candidates" / "a" / "student", moved)
    try:
        with pytest.raises(FileNotFoundError, match="best_student/ was left as it was"):
            export.export_best(board, results_dir)
        assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    finally:
        shutil.move(moved, results_dir / "candidates" / "a" / "student")
    # A successful export replaces it whole, and leaves no staging dirs behind.
    (out / "stale.txt").write_text("from an older export")
    export.export_best(board, results_dir)
    assert not (out / "stale.txt").exists() and (out / "model.safetensors").is_file() and (out / "README.md").is_file()
    assert not list(results_dir.glob(".best_student*"))


def test_one_ranking_keeps_exports_and_names_the_best_student(tmp_path, student_dir):
    """The janitor keeps weights, the leaderboard names the best student and best_student/ exports it by the
    same ranking: the selection scores (held-out training rows), ties by trial id, never the validation
    scores the leaderboard reports. Here the validation order (x > y > z) is the reverse of the selection
    order (y = z > x): a ranking by validation would export x, whose weights the janitor deleted."""
    from distil.search.references import best_candidate_rule
    from distil.search.tuner import Janitor

    _write(tmp_path / "spec.json", {"name": "t", "search": {"objectives": ["macro_score"]}})
    _write(tmp_path / "teacher" / "result.json", {"kind": "teacher", "params": {"model": "m"}, "glue": _glue(80.0)})
    for name, validation, selection, rule in [("x", 70.0, 50.0, "first"), ("y", 60.0, 65.0, "last"),
                                              ("z", 55.0, 65.0, "uniform")]:
        _write(tmp_path / "candidates" / name / "result.json",
               {"kind": "student", "params": {**PARAMS, "layer_selection": rule}, "glue": _glue(validation),
                "objectives": {"macro_score": selection}, "n_params": 11_000_000})
        shutil.copytree(student_dir, tmp_path / "candidates" / name / "student")

    Janitor(str(tmp_path), str(tmp_path / "train"), keep_students=1, metric="macro_score")._keep_best_students()
    kept = [n for n in "xyz" if (tmp_path / "candidates" / n / "student").is_dir()]
    assert kept == ["y"]  # the tie with z goes to the smaller trial id
    assert "search.keep_students" in (tmp_path / "candidates" / "x" / "student.pruned").read_text()

    board = leaderboard.load(tmp_path, resamples=0)
    assert board.frame.set_index("model").loc[["x", "y", "z"], "selection_score"].tolist() == [50.0, 65.0, 65.0]
    assert board.frame[board.frame["kind"] == "student"]["model"].tolist() == ["x", "y", "z"]  # shown by validation
    assert board.best_student()["model"] == "y"
    assert best_candidate_rule(tmp_path, "macro_score") == "last"
    out = export.export_best(board, tmp_path)
    assert (out / "model.safetensors").is_file() and "`y`" in (out / "README.md").read_text()
    assert summary.headline(board).startswith("best student `y`: macro 50.00")
    assert "picked by its selection score 65.00 on held-out training rows" in summary.headline(board)


def test_export_refuses_without_a_finished_student(results_dir):
    board = leaderboard.load(results_dir).only(["teacher", "c"])
    assert board.best_student() is None
    with pytest.raises(ValueError, match="no finished student"):
        export.export_best(board, results_dir)


def test_report_command_writes_everything(results_dir, capsys):
    from distil import cli

    assert cli.report(str(results_dir)) == 0
    printed = capsys.readouterr().out
    assert "report.html" in printed and "best_student" in printed
    assert (results_dir / "report.html").is_file() and (results_dir / "best_student" / "README.md").is_file()


@pytest.mark.slow
def test_real_glue_predictions_reproduce_their_scores_and_give_intervals(tmp_path, teacher_source, student_dir):
    """Real fine-tuning (transformers Trainer, 16 examples) writes the prediction files and the
    scores; the bootstrap reads them back, reproduces every score and gives intervals."""
    from distil.evaluation.finetune import finetune_and_evaluate
    from distil.config.glue import glue_task
    from tests.handmade import write_json

    from distil.config.settings import FinetuneSettings

    settings = FinetuneSettings(lr=5e-5, epochs=1, batch_size=8, max_seq_len=64, max_train_examples=16,
                                max_eval_examples=48, use_gpu=False)
    rows = {"teacher": (str(teacher_source), "teacher", {"model": "t"}),
            "candidates/a": (str(student_dir), "student", PARAMS),
            "candidates/b": (str(student_dir), "student", {**PARAMS, "alpha_ce": 1.0})}
    for where, (model, kind, params) in rows.items():
        seeds = [0, 1] if where != "candidates/a" else [0]
        runs = [finetune_and_evaluate(model, glue_task(str(GLUE), task), settings, seed,
                                      str(tmp_path / where / "predictions"))
                for task in ("stsb", "mrpc") for seed in seeds]
        write_json(tmp_path / where / "result.json", {"kind": kind, "params": params, "glue": runs})
    board = leaderboard.load(tmp_path, resamples=200)
    df = board.frame
    assert board.bootstrap["excluded"] == {} and sorted(board.bootstrap["rows"]) == ["a", "b", "teacher"]
    assert df["pct_teacher_lo"].notna().all() and df["p_best"].notna().sum() == 2
    assert set(board.chance) == {"stsb", "mrpc"} and board.chance["stsb"] == 0.0
