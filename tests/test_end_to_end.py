"""A real tiny sweep: real Ray (local cluster), real teacher, real Wikipedia and GLUE parquet,
early stopping on, the Optuna study in SQLite. One sweep (the session's `tiny_sweep`, conftest.py),
read by each test below."""

import json
import shutil

import optuna
import pandas as pd
import pytest

from distil.evaluation import scores
from distil.report import leaderboard

# The Ray sweeps share one xdist worker (`pytest -n 2 --dist loadgroup`): one sweep at a time, the
# other worker runs the remaining tests beside it (tests/conftest.py).
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("ray-sweeps")]


@pytest.fixture(scope="module")
def board(tiny_sweep):
    out, _ = tiny_sweep
    return pd.read_csv(out / "leaderboard.csv")


def test_every_row_kind_is_on_the_leaderboard(tiny_sweep, board, sweep_cache):
    out, _ = tiny_sweep
    df = board
    kinds = df.set_index("model")["kind"]
    assert list(kinds).count("student") == 2 and kinds["teacher"] == "teacher"
    assert kinds["random_init"] == "reference" and kinds["task-kd-wnli"] == "task_distill"
    # mlm_only (no teacher) and init_only-<rule> (no distillation step, the paper-default rule) rows.
    assert kinds["mlm_only"] == "reference" and kinds["init_only-last"] == "reference"
    mlm_only = json.loads((out / "references" / "mlm_only" / "result.json").read_text())
    assert mlm_only["distill"]["step"] == 4
    assert mlm_only["params"]["alpha_ce"] == 0 and mlm_only["params"]["alpha_mlm"] == 1
    # The paper defaults (points_to_evaluate[0]) ran in full as a reference row, never as a trial,
    # and every finished candidate is compared with them.
    paper = json.loads((out / "references" / "paper_defaults" / "result.json").read_text())
    assert kinds["paper_defaults"] == "reference" and paper["distill"]["step"] == 4
    assert paper["params"]["alpha_ce"] == 5.0 and paper["params"]["layer_selection"] == "last"
    assert df.loc[df["paper_defaults"], "model"].tolist() == ["paper_defaults"]
    students = df[df.kind == "student"]
    assert set(students["status"]) <= {"done", "stopped"} and (students["status"] == "done").any()
    done = df[(df.status == "done") & (df.kind != "task_distill")]
    assert done[["wnli", "stsb", "macro_score", "gain_over_random_init", "delta_vs_default"]].notna().all().all()
    # Task-specific distillation: scored on its task, from the teacher fine-tuned on it.
    kd = df[df.kind == "task_distill"].iloc[0]
    assert pd.notna(kd["wnli"]) and pd.isna(kd["stsb"]) and pd.isna(kd["macro_score"])
    assert (out / "teacher" / "finetuned" / "wnli" / "model.safetensors").exists()
    assert df["mnli_m"].isna().all()  # not asked for: empty, never invented
    assert set(students["layer_selection"]) <= {"first", "last"}
    teacher = json.loads((out / "teacher" / "result.json").read_text())
    assert teacher["head_fit"]["fitted_head"] and list(sweep_cache.glob("teacher-*/model.safetensors"))


def test_trials_distil_in_rungs_scored_on_the_proxy(tiny_sweep, board):
    out, _ = tiny_sweep
    df = board
    # Every trial distilled in rungs and was scored on the proxy after each rung it reached.
    for cand in (out / "candidates").iterdir():
        rungs = json.loads((cand / "progress.json").read_text())["rungs"]
        assert [rg["rung"] for rg in rungs] == list(range(len(rungs)))
        assert all(rg["proxy_score"] is not None for rg in rungs)
        assert rungs[0]["step"] == 2 and rungs[0]["distill"]["resumed_from_step"] == 0  # 1/3 of 4 steps, rounded up
        if len(rungs) == 2:
            assert rungs[1]["step"] == 4 and rungs[1]["distill"]["resumed_from_step"] == 2  # continued, not restarted
    done_students = df[(df.kind == "student") & (df.status == "done")]
    assert done_students["gain_over_mlm_only"].notna().all()
    assert done_students.loc[done_students["layer_selection"] == "last", "gain_over_init"].notna().all()
    # Learning curves: step 0 from the undistilled init, the teacher's proxy as the ceiling.
    assert (out / "references" / "init_only-last" / "proxy-2L.json").exists()
    assert (out / "teacher" / "proxy.json").exists()
    assert (out / "plots" / "curves.png").stat().st_size > 0


def test_the_study_has_one_row_per_trial_and_the_paper_defaults_are_none_of_them(tiny_sweep, board):
    out, _ = tiny_sweep
    students = board[board.kind == "student"]
    # The study: one row per trial, each proposed by the sampler (the spec's one point, the paper
    # defaults, is the reference row), finished trials complete or pruned.
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{out / 'optuna.db'}")
    trials = study.get_trials()
    assert len(trials) == 2 and not any(t.user_attrs["proposed_by"] == "points_to_evaluate" for t in trials)
    assert all(t.params["alpha_ce"] != 5.0 for t in trials)
    assert {t.user_attrs["tune_trial_id"] for t in trials} == {c.name for c in (out / "candidates").iterdir()}
    by_id = {t.user_attrs["tune_trial_id"]: t for t in trials}
    for _, row in students.iterrows():
        t = by_id[row["model"]]
        if row["status"] == "done":
            # The study learns from the held-out selection slices of the train splits; the board
            # reports the validation splits.
            result = json.loads((out / "candidates" / row["model"] / "result.json").read_text())
            assert t.state == optuna.trial.TrialState.COMPLETE
            assert t.value == pytest.approx(scores.selection_row(result)["macro_score"]) != row["macro_score"]
            assert {p.name for p in (out / "candidates" / row["model"] / "predictions" / "selection").iterdir()} == {
                "stsb-seed0.parquet", "wnli-seed0.parquet"}
        else:  # pruned with the proxy score it was stopped on as its last intermediate value
            assert t.state == optuna.trial.TrialState.PRUNED
            stopped = json.loads((out / "candidates" / row["model"] / "status.json").read_text())
            assert t.intermediate_values[max(t.intermediate_values)] == pytest.approx(stopped["proxy_score"])


def test_disk_budget_and_a_quiet_console(tiny_sweep, board):
    out, r = tiny_sweep
    df = board
    # Disk budget: no Train checkpoints left; only the best finished student keeps its weights: the best by
    # the selection score the search ranked on (ties by trial id), which is the leaderboard's best student
    # and the one best_student/ exports, whatever the validation macro's order.
    assert not any((out / "train").glob("*/checkpoint_*"))
    kept = [c.name for c in (out / "candidates").iterdir() if (c / "student" / "model.safetensors").exists()]
    done = df[(df.status == "done") & (df.kind == "student")]
    best = min(zip(-done["selection_score"], done["model"]))[1]
    assert kept == [best] and (out / "best_student" / "model.safetensors").exists()
    assert f"`{best}`" in (out / "best_student" / "README.md").read_text()
    # The console: no library chatter (it went to the log file).
    assert "LOAD REPORT" not in r.stdout + r.stderr and (out / "logs" / "workers.log").stat().st_size > 0
    # Each trial starts once and says each rung once; the first trial waits PAUSED for rung 0's
    # decision, so if promoted it is "resumed" (the second, reporting last, goes on at once).
    assert r.stdout.count("started (") == 2 and r.stdout.count("rung 0 at step") == 2
    first = min((out / "candidates").iterdir(), key=lambda c: json.loads((c / "config.json").read_text())["started"])
    assert r.stdout.count("resumed after rung 0") == int((first / "result.json").exists())
    # Latency timed as the spec's `profile:` says (tests/tiny_spec.py), and the notes say so.
    teacher = json.loads((out / "run.json").read_text())["profiles"]["teacher"]
    assert (teacher["seq_len"], teacher["rounds"], teacher["repeats_b1"], teacher["repeats_b32"]) == (32, 2, 3, 1)
    assert "CPU forward pass of 32 tokens" in (out / "leaderboard.md").read_text()


def test_report_rebuilds_the_same_leaderboard(tiny_sweep, board, tmp_path, capsys):
    """`report` (distil's CLI in this process: tests/test_resume.py and test_storage.py run it as a
    process) on a copy of the results, its leaderboard.csv deleted: the same frame back."""
    import run_sweep

    out = shutil.copytree(tiny_sweep[0], tmp_path / "results", symlinks=True)
    (out / "leaderboard.csv").unlink()
    capsys.readouterr()
    assert run_sweep.main(["report", str(out)]) == 0
    assert "| teacher" in capsys.readouterr().out
    pd.testing.assert_frame_equal(pd.read_csv(out / "leaderboard.csv"), board)
    references = {"teacher", "random_init", "mlm_only", "paper_defaults", "init_only-last", "task-kd-wnli"}
    assert set(leaderboard.load(out).frame["model"]) >= references


def test_the_confirmation_reruns_the_finalist_and_the_paper_defaults_with_fresh_seeds(tiny_sweep):
    """search.confirm (tests/tiny_spec.py TINY_CONFIRM): the best finished trial by its selection score and
    the paper defaults, each distilled again with seeds 1 and 2 and fine-tuned with seeds 0-2; each run's
    predictions in its own folder, the row's scores the mean over runs of each run's mean over seeds."""
    from distil.config.glue import TASKS
    from distil.evaluation.finetune import score_predictions

    out, r = tiny_sweep
    done = {c.name: json.loads((c / "result.json").read_text())["objectives"]["macro_score"]
            for c in (out / "candidates").iterdir() if (c / "result.json").exists()}
    best = max(sorted(done), key=done.get)
    assert sorted(p.name for p in (out / "confirmation").iterdir() if p.is_dir()) == sorted(["paper_defaults", best])
    plan = json.loads((out / "confirmation" / "plan.json").read_text())
    assert plan["finalists"] == [best] and (plan["distill_seeds"], plan["seeds"]) == ([1, 2], [0, 1, 2])
    for name in ("paper_defaults", best):
        row = out / "confirmation" / name
        result = json.loads((row / "result.json").read_text())
        assert result["kind"] == "confirmation" and result["params"]["of"] == name
        assert result["params"]["distill_seeds"] == [1, 2] and len(result["distill"]["runs"]) == 2
        assert all(m["step"] == 4 for m in result["distill"]["runs"])  # the candidates' full steps
        assert sorted((g["run"], g["task"], g["seed"]) for g in result["glue"]) == [
            (d, t, s) for d in (0, 1) for t in ("stsb", "wnli") for s in (0, 1, 2)]
        # Each run's predictions in predictions/run<d>/ (none directly in predictions/), and they are
        # what its scores were computed from.
        assert not list((row / "predictions").glob("*.parquet"))
        for g in result["glue"]:
            preds = pd.read_parquet(row / "predictions" / f"run{g['run']}" / f"{g['task']}-seed{g['seed']}.parquet")
            assert score_predictions(TASKS[g["task"]], preds) == pytest.approx(g["scores"][""])
        # The row's score of a split: the mean over runs of each run's mean over its seeds.
        board_row = scores.row_from_result(result)
        for task in ("wnli", "stsb"):
            per_run = [scores.row_from_result({"glue": [g for g in result["glue"] if g["run"] == d]})[task]
                       for d in (0, 1)]
            assert board_row[task] == pytest.approx(sum(per_run) / 2)
        # Runs on disk for resume; the rerun students and their Train checkpoints are gone.
        assert (row / "run0.json").exists() and (row / "run1.json").exists()
        assert not list(row.glob("student-run*")) and not list((out / "train").glob(f"confirm-{name}-d*"))
        for d, seed in enumerate([1, 2]):
            assert f"confirmation: distilling {name} with distillation seed {seed} (run {d})" in r.stdout
        assert f"confirmation: {name} done (macro_score" in r.stdout
