"""A sweep stopped twice: by Ctrl-C (SIGINT) just after its first trial wrote its result, before
Tune recorded the trial's end, which exits 130 with the `resume` command (resumed, that trial is
reported from disk, not run again); then, resumed, its driver SIGKILLed (no clean-up) while the
second trial distilled: `report` rebuilds a leaderboard from what was written, and a second
`resume` finishes the sweep."""

import hashlib
import json
import os
import signal
import subprocess
import sys
import time

import optuna
import pandas as pd
import pytest

import run_sweep
from tests.conftest import ROOT, registered_checkpoint, registered_checkpoint_metrics
from tests.tiny_spec import TINY_EARLY_STOPPING, write_tiny_spec

pytestmark = pytest.mark.slow


def _hashes(directory):
    return {str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.rglob("*")) if p.is_file()}


def _trials_in_start_order(out):
    configs = [(json.loads(c.read_text())["started"], c.parent) for c in out.glob("candidates/*/config.json")]
    return [d for _, d in sorted(configs)]


def test_an_interrupted_then_killed_sweep_reports_then_resumes_without_rerunning_finished_trials(tmp_path, sweep_cache,
                                                                                                  capsys):
    spec = write_tiny_spec(tmp_path / "tiny.yaml", name="tiny-resume", lean=True,
                           distill={"steps": 12, "checkpoint_every": 2}, num_candidates=2,
                           early_stopping=TINY_EARLY_STOPPING)
    out, cache = tmp_path / "results", sweep_cache
    # Ctrl-C once the first trial has written its result.json, while it holds before telling Tune
    # (a test hook in distil.search.trial): Tune saves its state with that trial still running, the
    # run says how to resume, exit 130 (not 0).
    stdout, stderr = tmp_path / "run.out", tmp_path / "run.err"  # files, not pipes: nobody reads them until the end
    with stdout.open("w") as o, stderr.open("w") as e:
        proc = subprocess.Popen([sys.executable, "run_sweep.py", "run", str(spec), "--output", str(out), "--cache-dir",
                                 str(cache)], cwd=ROOT, stdout=o, stderr=e, start_new_session=True,
                                env={**os.environ, "DISTIL_TEST_PAUSE_AFTER_RESULT_S": "900"})
    # The teacher's row is written too (its GLUE runs, submitted before the search, end long before
    # a trial's), so that after the resume the kill waits for nothing but the second trial's checkpoint.
    deadline = time.time() + 900
    while not (any(out.glob("candidates/*/result.json")) and (out / "teacher" / "result.json").exists()) \
            and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    assert proc.poll() is None, "the sweep ended before its first trial wrote its result"
    time.sleep(1)  # result.json is written atomically; let the trial reach its hold
    proc.send_signal(signal.SIGINT)  # what Ctrl-C sends the driver
    proc.wait(timeout=300)
    assert proc.returncode == 130, stdout.read_text()[-2000:] + stderr.read_text()[-2000:]
    assert stderr.read_text().strip().splitlines()[-1] == (
        "interrupted: the sweep stopped before its last trial ended; continue it with "
        f"`python run_sweep.py resume {out}` (`report` shows what has finished)")
    [first] = _trials_in_start_order(out)
    assert (first / "result.json").exists() and not (first / "status.json").exists()
    first_files = _hashes(first)  # from here on never rewritten: not by the restarted trial, nor by `report`

    proc = subprocess.Popen([sys.executable, "run_sweep.py", "resume", str(out)],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)

    def second_trial_checkpointed():  # and the teacher's row written (when its runs end, not at the sweep's end)
        trials = _trials_in_start_order(out)
        return (len(trials) >= 2 and registered_checkpoint(out / "train" / f"distill-{trials[1].name}") is not None
                and (out / "teacher" / "result.json").exists())

    deadline = time.time() + 900
    try:  # kill the driver and every Ray process it started once the second trial has a Train checkpoint
        while not second_trial_checkpointed() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert second_trial_checkpointed(), "the second trial never wrote a Train checkpoint"
    assert _trials_in_start_order(out)[0] == first
    second = _trials_in_start_order(out)[1]
    # Where the kill landed: mostly in rung 0 after its first checkpoint (step 2); a slow poll can
    # land it between rung 0's last checkpoint and its record, or in rung 1.
    at_kill = registered_checkpoint_metrics(out / "train" / f"distill-{second.name}")
    rungs_at_kill = len(json.loads((second / "progress.json").read_text())["rungs"]) \
        if (second / "progress.json").exists() else 0
    assert not (second / "result.json").exists()
    assert not (out / "leaderboard.csv").exists()  # interrupted, then killed, before the sweep's own report
    assert _hashes(first) == first_files  # restarted by Tune on resume, reported from disk: nothing re-run

    # `report` on the killed sweep: the rows written so far, the teacher's included (distil's CLI in
    # this process: tests/test_storage.py runs `report` as a process).
    capsys.readouterr()
    assert run_sweep.main(["report", str(out)]) == 0, capsys.readouterr()
    df = pd.read_csv(out / "leaderboard.csv")
    done = df[df["status"] == "done"]
    assert (df["kind"] == "teacher").sum() == 1 and done.loc[done["kind"] == "student", "pct_teacher"].notna().all()
    assert len(done) >= 2 and done["macro_score"].notna().all()  # the teacher and the first trial
    best = df.loc[df["kind"] == "student", "macro_score"].idxmax()
    assert (out / "best_student" / "model.safetensors").exists()
    assert df.loc[best, "model"] in (out / "best_student" / "README.md").read_text()
    for name in ("leaderboard.parquet", "leaderboard.md", "report.html", "plots/scores.png", "plots/pareto.png",
                 "plots/progress.png"):
        assert (out / name).stat().st_size > 0, name

    r = subprocess.run([sys.executable, "run_sweep.py", "resume", str(out)], cwd=ROOT, capture_output=True, text=True,
                       timeout=1200)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]

    trials = _trials_in_start_order(out)
    assert [t.name for t in trials] == [first.name, second.name]  # all num_candidates, none started twice
    assert _hashes(first) == first_files  # a finished trial is not re-run (nor touched by `report`)
    for t in trials:
        assert (t / "result.json").exists() or json.loads((t / "status.json").read_text())["status"] == "stopped"
    # The trial that was distilling continued from its last registered Train checkpoint, not from
    # step 0: the rung the kill cut ran on from that checkpoint's step or, when that checkpoint
    # already ended the rung, reported it as it was (no step run again).
    rungs = json.loads((second / "progress.json").read_text())["rungs"]
    assert [r["step"] for r in rungs] in ([4], [4, 12]) and at_kill["step"] >= 2  # [4]: stopped at rung 0
    cut = rungs[rungs_at_kill]["distill"]
    assert cut["resumed_from_step"] == at_kill["step"] or cut == at_kill, (rungs_at_kill, at_kill, rungs)
    # The study continued with its history: each trial once, all finished.
    study = optuna.load_study(study_name="tiny-resume", storage=f"sqlite:///{out / 'optuna.db'}")
    finished = [t for t in study.get_trials() if t.state.is_finished()]
    assert sorted(t.user_attrs["tune_trial_id"] for t in finished) == sorted(t.name for t in trials)
    # The first trial's end reached the study from the replayed result: complete, with its score.
    [replayed] = [t for t in finished if t.user_attrs["tune_trial_id"] == first.name]
    macro = json.loads((first / "result.json").read_text())["objectives"]["macro_score"]
    assert replayed.state == optuna.trial.TrialState.COMPLETE and replayed.value == pytest.approx(macro)
    df = pd.read_csv(out / "leaderboard.csv")
    assert (df["kind"] == "student").sum() == 2 and (df["kind"] == "teacher").sum() == 1
