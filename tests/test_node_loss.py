"""A sweep survives losing the Ray node its distillation runs on.

A 2-node cluster on this machine: the head as README starts it (cluster/local_head.sh, token auth)
with 0 CPUs, so every Train worker and GLUE task must run on the worker node (3 CPUs: a trial's 2
Train workers plus one GLUE task). The sweep is submitted with the README's client command
(`RAY_AUTH_MODE=token ray job submit --working-dir . --runtime-env cluster/job_runtime_env.yaml --
python run_sweep.py run SPEC ...`): the job must succeed and its leaderboard hold the teacher and
every student, done (the end of tests/test_auth.py's story: the token head runs a submitted
sweep). Once the first trial's Train run has registered a checkpoint,
the worker node is SIGKILLed (its session and every process under its temp dir: a lost machine,
no clean-up), and a fresh worker node joins once the GCS has marked the old one dead.

Two cases, by where the trial's own actor (the Tune trainable, and with it the Train controller)
lives. It asks for {"CPU": 0, "memory": 1}, so the node without a `memory` resource cannot hold it:
* `head`: only the Train workers are lost; Ray Train's FailureConfig restarts the worker group
  within the same trial attempt (Tune records no failure);
* `worker`: the trial's actor is lost too; Tune's FailureConfig restarts the trial, which
  continues its Train run by name from the last checkpoint (Tune records one failure).

The sweep must finish (exit 0) with a result for every candidate, the interrupted trial's
distillation must have continued from its checkpoint (resumed_from_step > 0, all planned steps
done), and every file the sweep had written to results/ before the loss must still be there, byte
for byte.
"""

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest
import yaml

from tests.conftest import ROOT, registered_checkpoint
from tests.local_cluster import BIN, LocalCluster
from tests.tiny_spec import write_tiny_spec

STEPS, CHECKPOINT_EVERY = 20, 5  # 15 steps after the first checkpoint: time to kill the node mid-run
TIMEOUT = 1500  # s per wait; a 2-core machine shared with other work can be very slow


def _kept_files(out: Path) -> dict[str, str]:
    """sha256 of every file of results/ that must never change once written: all but Tune's own
    experiment state (tune/), the Optuna study database, Ray Train's checkpoints (train/, deleted by
    design once a trial ends), logs/ (workers.log grows and logs/live/ is rewritten at every
    step, by design) and half-written *.tmp files."""
    hashes = {}
    for p in out.rglob("*"):
        rel = p.relative_to(out)
        if (not p.is_file() or rel.parts[0] in ("tune", "train", "logs") or p.name.startswith("optuna.db")
                or p.suffix == ".tmp"):
            continue
        try:
            hashes[str(rel)] = hashlib.sha256(p.read_bytes()).hexdigest()
        except FileNotFoundError:  # replaced while listed
            pass
    return hashes


def _wait(what: str, cond, sweep, log: Path, poll: float = 0.5):
    t0 = time.monotonic()
    while not (value := cond()):
        assert sweep.poll() is None, \
            f"the sweep exited ({sweep.returncode}) while waiting for {what}\n" + log.read_text()[-5000:]
        assert time.monotonic() - t0 < TIMEOUT, f"no {what} after {TIMEOUT} s\n" + log.read_text()[-5000:]
        time.sleep(poll)
    return value


@pytest.mark.slow
@pytest.mark.xdist_group("ray-sweeps")  # one sweep at a time (tests/conftest.py)
# "worker" (the trial's actor dies with the node: Tune restarts the trial, which continues its Train
# run by name) covers Ray Train's own worker restart too; "head" is that alone (-k head to run it).
@pytest.mark.parametrize("trial_actor_on", ["worker", pytest.param("head", marks=pytest.mark.skipif(
    "not config.getoption('-k')", reason="covered by the worker case; select it with -k head"))])
def test_submitted_sweep_survives_losing_the_worker_node(trial_actor_on, tmp_path, sweep_cache, capsys):
    # One candidate: the node is lost under the first trial; a second would only add a normal trial.
    spec_path = write_tiny_spec(tmp_path / "tiny.yaml", name="tiny-node-loss", lean=True, num_candidates=1,
                                distill={"steps": STEPS, "checkpoint_every": CHECKPOINT_EVERY})
    spec = yaml.safe_load(spec_path.read_text())
    out, log = tmp_path / "results", tmp_path / "sweep.log"
    no_memory = ["--memory=0"]  # this node cannot hold the trial's actor
    worker_args = ["--num-cpus=3", *(no_memory if trial_actor_on == "head" else [])]
    cluster = LocalCluster(tmp_path / "cluster", ["--num-cpus=0", *(no_memory if trial_actor_on == "worker" else [])])
    sweep = None
    try:
        cluster.wait_for_nodes(1)
        worker = cluster.add_worker(*worker_args)
        cluster.wait_for_nodes(2, joining=worker)
        t_start = time.monotonic()
        # The README's client command (cluster.env: RAY_AUTH_MODE=token, the token in HOME); it
        # prints the job's output and exits when the job ends.
        sweep = subprocess.Popen(
            [str(BIN / "ray"), "job", "submit", "--address", cluster.dashboard, "--working-dir", ".",
             "--runtime-env", "cluster/job_runtime_env.yaml", "--",
             sys.executable, "run_sweep.py", "run", str(spec_path), "--output", str(out),
             "--cache-dir", str(sweep_cache)],
            cwd=ROOT, env=cluster.env, start_new_session=True, stdout=open(log, "w"), stderr=subprocess.STDOUT)

        # 1. A trial distils on the worker node and Ray Train has registered a checkpoint.
        def checkpointed_run():
            return next((r for r in (out / "train").glob("distill-*") if registered_checkpoint(r)), None)
        run_dir = _wait("registered Train checkpoint", checkpointed_run, sweep, log, poll=0.2)
        trial, before = run_dir.name.removeprefix("distill-"), registered_checkpoint(run_dir)
        kept = _kept_files(out)

        # 2. The node is lost: SIGKILL of all its processes, nothing drained.
        t_kill = time.monotonic()
        worker.kill()
        detect_s = cluster.wait_for_nodes(1, timeout=TIMEOUT)
        assert not (out / "candidates" / trial / "result.json").exists(), "the trial ended before the node was lost"

        # 3. A node comes back (as an autoscaler would replace it).
        worker = cluster.add_worker(*worker_args)
        join_s = cluster.wait_for_nodes(2, joining=worker)
        _wait("checkpoint after the restart", lambda: registered_checkpoint(run_dir) not in (None, before)
              or (out / "candidates" / trial / "result.json").exists(), sweep, log)
        resume_s = time.monotonic() - t_kill
        _wait(f"result of trial {trial}", lambda: (out / "candidates" / trial / "result.json").exists(), sweep, log)
        trial_done_s = time.monotonic() - t_kill
        rc = sweep.wait(timeout=TIMEOUT)
        total_s = time.monotonic() - t_start
    finally:
        if sweep is not None and sweep.poll() is None:
            os.killpg(sweep.pid, signal.SIGKILL)
            sweep.wait()
        for p in psutil.process_iter(["cmdline"]):  # a job driver still running (its own session): a failed test
            if str(spec_path) in (p.info["cmdline"] or []):
                try:
                    p.kill()
                except psutil.NoSuchProcess:
                    pass
        cluster.shutdown()

    assert rc == 0 and "succeeded" in log.read_text(), log.read_text()[-5000:]
    # Every candidate has a result.
    cands = sorted((out / "candidates").iterdir())
    assert len(cands) == spec["search"]["num_candidates"], [c.name for c in cands]
    results = {c.name: json.loads((c / "result.json").read_text()) for c in cands}
    assert all(r["distill"]["step"] == STEPS for r in results.values())
    # The interrupted trial's distillation continued from a checkpoint and did all its steps.
    d = results[trial]["distill"]
    assert d["step"] == d["total_steps"] == STEPS, d
    assert d["resumed_from_step"] > 0 and d["resumed_from_step"] % CHECKPOINT_EVERY == 0, d
    # Which FailureConfig recovered it: Train's within the trial's attempt, or Tune's by a restart.
    from ray.tune import ExperimentAnalysis

    failures = {t.trial_id: t.run_metadata.num_failures for t in ExperimentAnalysis(str(out / "tune")).trials}
    assert failures[trial] == (0 if trial_actor_on == "head" else 1), failures
    # Nothing written before the loss is lost or changed.
    after = _kept_files(out)
    assert {f: after.get(f) for f in kept} == kept
    # The submitted job's leaderboard: the teacher and every student, done.
    df = pd.read_csv(out / "leaderboard.csv")
    assert len(df) == 1 + len(cands) and (df["status"] == "done").all() and df["macro_score"].notna().all()

    with capsys.disabled():  # the figures go in the closing note
        print(f"\nnode loss (trial actor on the {trial_actor_on}): trial {trial} lost its node after {before}; "
              f"node marked dead {detect_s:.0f} s after the kill, new node joined in {join_s:.0f} s, distillation "
              f"checkpointed again {resume_s:.0f} s after the kill (resumed_from_step={d['resumed_from_step']}), "
              f"trial done {trial_done_s:.0f} s after the kill; Tune failures {failures[trial]}; sweep {total_s:.0f} s")
