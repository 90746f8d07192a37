"""A sweep stopped twice: its driver SIGKILLed (no clean-up) while the second trial distilled
rung 0 (the first waiting PAUSED for the rung's decision); resumed, that distillation continues
from its Train checkpoint, and once the promoted trial has written its result, Ctrl-C (SIGINT) before
Tune records the trial's end exits 130 with the `resume` command. `report` rebuilds a leaderboard
from what was written, and a second `resume` finishes the sweep, reporting the ended trial from disk
instead of running it again.

The students are narrower than the teacher (2 layers x 192 wide, the teacher's 12 heads, FFN 768, from
the 6 x 384 x 1536 MiniLM: weight selection) and learn from every loss family: alpha_ce, alpha_mlm,
alpha_cos, alpha_hidden, alpha_attn and alpha_relation, so the resumed distillation continues with the
learned projections of its Train checkpoint (issue 25). The early-stopping baseline and the init_only
rows are built at that shape, and named by it."""

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
import torch
import yaml

import run_sweep
from tests.conftest import ROOT, kill_process_tree, registered_checkpoint, registered_checkpoint_metrics
from tests.tiny_spec import TINY_EARLY_STOPPING, write_tiny_spec

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("ray-sweeps")]  # one sweep at a time (conftest.py)

# Narrower than the MiniLM teacher (384 wide, 12 heads, FFN 1536), with its head count so that alpha_attn applies.
NARROW = {"hidden_size": 192, "num_attention_heads": 12, "intermediate_size": 768}
SHAPE = "2L192H12F768"  # the students' shape as reference rows and profiles name it
# Every loss family, beside the searched alpha_ce and the default alpha_mlm 2 and alpha_cos 1. relation_heads
# 12 divides both widths (MiniLMv2's 48 would leave 4 dimensions a relation head in the student).
NARROW_ALL_TERMS = {"alpha_hidden": 1.0, "alpha_attn": 1.0, "alpha_relation": 1.0, "relation_heads": 12}


def _hashes(directory):
    return {str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.rglob("*")) if p.is_file()}


def _trials_in_start_order(out):
    configs = [(json.loads(c.read_text())["started"], c.parent) for c in out.glob("candidates/*/config.json")]
    return [d for _, d in sorted(configs)]


def test_a_killed_then_interrupted_sweep_reports_then_resumes_without_rerunning_finished_work(tmp_path, sweep_cache,
                                                                                              capsys):
    # The proxy on stsb (correlations: continuous): wnli's accuracy on 16 rows moves in steps of 6.25, so both
    # trials could tie at rung 0, and a tie keeps both (distil.search.halving.promoted), leaving no stopped trial.
    stsb_proxy = TINY_EARLY_STOPPING | {"proxy": TINY_EARLY_STOPPING["proxy"] | {"tasks": ["stsb"]}}
    spec = write_tiny_spec(tmp_path / "tiny.yaml", name="tiny-resume", lean=True,
                           distill={"steps": 12, "checkpoint_every": 2}, num_candidates=2,
                           early_stopping=stsb_proxy, **NARROW_ALL_TERMS)
    spec_yaml = yaml.safe_load(spec.read_text())
    spec_yaml["student"] |= NARROW
    spec_yaml["glue"]["init_only_reference"] = True  # the undistilled init of each rule, at the students' shape
    spec.write_text(yaml.safe_dump(spec_yaml))
    out, cache = tmp_path / "results", sweep_cache
    run = [sys.executable, "run_sweep.py", "run", str(spec), "--output", str(out), "--cache-dir", str(cache)]
    proc = subprocess.Popen(run, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)

    def second_trial_checkpointed():  # and the teacher's row written (when its runs end, not at the sweep's end)
        trials = _trials_in_start_order(out)
        return (len(trials) >= 2 and registered_checkpoint(out / "train" / f"distill-{trials[1].name}") is not None
                and (out / "teacher" / "result.json").exists())

    deadline = time.time() + 900
    try:  # kill the driver and every process under it once the second trial has a Train checkpoint
        while not second_trial_checkpointed() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.2)
    finally:
        kill_process_tree(proc.pid)
        proc.wait()
    assert second_trial_checkpointed(), "the second trial never wrote a Train checkpoint"
    first, second = _trials_in_start_order(out)
    at_kill = registered_checkpoint_metrics(out / "train" / f"distill-{second.name}")
    first_rung0 = json.loads((first / "progress.json").read_text())["rungs"]
    # Killed in rung 0 of the second trial (4 of its 12 steps), after its checkpoint at step 2; the
    # first waits for the rung's decision, nothing has a result.
    assert not (second / "progress.json").exists() and at_kill["step"] == 2, at_kill
    # The checkpoint the resumed run restores holds the learned projections of alpha_hidden (W_h, W_e: the
    # student's 192 units to the teacher's 384), beside the optimizer's state for them.
    ckpt = out / "train" / f"distill-{second.name}" / registered_checkpoint(out / "train" / f"distill-{second.name}")
    state = torch.load(ckpt / "train_state.pt", weights_only=True)
    assert {k: tuple(v.shape) for k, v in state["projections"].items()} == {
        "hidden.weight": (384, 192), "hidden.bias": (384,), "embeddings.weight": (384, 192), "embeddings.bias": (384,)}
    assert json.loads((ckpt / "config.json").read_text())["dim"] == 192  # the student of the checkpoint is narrow
    assert [r["rung"] for r in first_rung0] == [0] and not list(out.glob("candidates/*/result.json"))
    assert not (out / "leaderboard.csv").exists()

    # Resumed; Ctrl-C once a trial has written its result.json, while it holds before telling Tune
    # (a test hook in distil.search.trial): Tune saves its state with that trial still running, the
    # run says how to resume, exit 130 (not 0).
    stdout, stderr = tmp_path / "run.out", tmp_path / "run.err"  # files, not pipes: nobody reads them until the end
    with stdout.open("w") as o, stderr.open("w") as e:
        proc = subprocess.Popen([sys.executable, "run_sweep.py", "resume", str(out)], cwd=ROOT, stdout=o, stderr=e,
                                start_new_session=True, env={**os.environ, "DISTIL_TEST_PAUSE_AFTER_RESULT_S": "900"})
    deadline = time.time() + 900
    while not any(out.glob("candidates/*/result.json")) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    assert proc.poll() is None, "the sweep ended before a trial wrote its result"
    time.sleep(1)  # result.json is written atomically; let the trial reach its hold
    proc.send_signal(signal.SIGINT)  # what Ctrl-C sends the driver
    proc.wait(timeout=300)
    assert proc.returncode == 130, stdout.read_text()[-2000:] + stderr.read_text()[-2000:]
    assert stderr.read_text().strip().splitlines()[-1] == (
        "interrupted: the sweep stopped before its last trial ended; continue it with "
        f"`python run_sweep.py resume {out}` (`report` shows what has finished)")
    [winner] = [t for t in (first, second) if (t / "result.json").exists()]
    assert not (winner / "status.json").exists()
    winner_files = _hashes(winner)  # from here on never rewritten: not by the restarted trial, nor by `report`
    # The distillation the kill cut continued from its registered checkpoint, not from step 0 (or,
    # had that checkpoint ended the rung, reported it as it was); the first trial's rung 0 was not redone.
    cut = json.loads((second / "progress.json").read_text())["rungs"][0]
    assert cut["step"] == 4 and cut["distill"]["resumed_from_step"] == at_kill["step"], cut
    assert json.loads((first / "progress.json").read_text())["rungs"][:1] == first_rung0

    # `report` on the interrupted sweep: the rows written so far, the teacher's included (distil's
    # CLI in this process: tests/test_storage.py runs `report` as a process).
    capsys.readouterr()
    assert run_sweep.main(["report", str(out)]) == 0, capsys.readouterr()
    df = pd.read_csv(out / "leaderboard.csv")
    done = df[df["status"] == "done"]
    assert (df["kind"] == "teacher").sum() == 1 and done.loc[done["kind"] == "student", "pct_teacher"].notna().all()
    assert set(done["model"]) >= {"teacher", winner.name} and done["macro_score"].notna().all()
    assert (out / "best_student" / "model.safetensors").exists() and winner.name in (
        out / "best_student" / "README.md").read_text()
    for name in ("leaderboard.parquet", "leaderboard.md", "report.html", "plots/scores.png", "plots/pareto.png",
                 "plots/progress.png"):
        assert (out / name).stat().st_size > 0, name

    r = subprocess.run([sys.executable, "run_sweep.py", "resume", str(out)], cwd=ROOT, capture_output=True, text=True,
                       timeout=1200)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]

    trials = _trials_in_start_order(out)
    assert trials == [first, second]  # all num_candidates, none started twice
    assert _hashes(winner) == winner_files  # a finished trial is not re-run (nor touched by `report`)
    [loser] = {first, second} - {winner}
    rung0 = {t.name: json.loads((t / "progress.json").read_text())["rungs"][0] for t in trials}
    assert not (loser / "result.json").exists() and (loser / "status.json").exists(), rung0  # rung 0 stopped one
    assert json.loads((loser / "status.json").read_text())["status"] == "stopped"
    # The study continued with its history: each trial once, all finished.
    study = optuna.load_study(study_name="tiny-resume", storage=f"sqlite:///{out / 'optuna.db'}")
    finished = [t for t in study.get_trials() if t.state.is_finished()]
    assert sorted(t.user_attrs["tune_trial_id"] for t in finished) == sorted(t.name for t in trials)
    # The winner's end reached the study from the replayed result: complete, with its objective.
    [replayed] = [t for t in finished if t.user_attrs["tune_trial_id"] == winner.name]
    objective = json.loads((winner / "result.json").read_text())["objectives"]["macro_score"]
    assert replayed.state == optuna.trial.TrialState.COMPLETE and replayed.value == pytest.approx(objective)
    df = pd.read_csv(out / "leaderboard.csv")
    assert (df["kind"] == "student").sum() == 2 and (df["kind"] == "teacher").sum() == 1
    # Reference rows and the early-stopping baseline at the students' shape, named by it; the shape columns.
    done = df[df["status"] == "done"]
    assert f"init_only-first-{SHAPE}" in set(done["model"]), sorted(df["model"])
    assert sorted(p.parent.name for p in out.glob("references/*/proxy-*L.json")) == [
        f"init_only-{rule}-{SHAPE}" for rule in ("first", "last")]  # each rule's step 0, at the students' shape
    rows = df.set_index("model")
    assert rows.loc[winner.name, ["n_layers", "hidden_size", "heads", "ffn"]].tolist() == [2, 192, 12, 768]
    assert rows.loc["teacher", ["n_layers", "hidden_size", "heads", "ffn"]].tolist() == [6, 384, 12, 1536]
    assert rows.loc["teacher", "n_params"] > 2 * rows.loc[winner.name, "n_params"]
    assert rows.loc[winner.name, ["alpha_hidden", "alpha_attn", "alpha_relation"]].tolist() == [1.0, 1.0, 1.0]
    assert pd.notna(rows.loc[winner.name, "gain_over_init"])  # against the init_only row of its rule and shape
    run_state = json.loads((out / "run.json").read_text())
    assert set(run_state["profiles"]) == {"teacher", f"student-{SHAPE}"}
    assert rows.loc[winner.name, "latency_ms_b1"] == pytest.approx(
        run_state["profiles"][f"student-{SHAPE}"]["latency_ms_b1"])
    params = json.loads((winner / "result.json").read_text())["params"]
    assert {k: params[k] for k in ("hidden_size", "num_attention_heads", "intermediate_size", "alpha_hidden",
                                   "alpha_attn", "alpha_relation", "relation_heads")} == {
        "hidden_size": 192, "num_attention_heads": 12, "intermediate_size": 768, "alpha_hidden": 1.0,
        "alpha_attn": 1.0, "alpha_relation": 1.0, "relation_heads": 12}
