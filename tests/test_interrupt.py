"""Ctrl-C during the search: Tune saves its state and returns, the run exits 130 with the
`resume` command (not 0 as if the sweep were done), and `resume` finishes the sweep."""

import json
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT
from tests.tiny_spec import write_tiny_spec

pytestmark = pytest.mark.slow


def test_ctrl_c_during_the_search_exits_130_with_the_resume_command_and_resume_finishes(tmp_path):
    spec = write_tiny_spec(tmp_path / "tiny.yaml", name="tiny-sigint", lean=True, distill={"steps": 40, "checkpoint_every": 4},
                           num_candidates=2)
    out, cache = tmp_path / "results", tmp_path / "cache"
    proc = subprocess.Popen([sys.executable, "run_sweep.py", "run", str(spec), "--output", str(out), "--cache-dir", str(cache)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.time() + 600
    while not any(out.glob("candidates/*/config.json")) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)  # the first trial has started distilling
    assert proc.poll() is None, "the sweep ended before its first trial started"
    proc.send_signal(signal.SIGINT)  # what Ctrl-C sends the driver
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 130, stdout[-2000:] + stderr[-2000:]
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("interrupted:") and f"python run_sweep.py resume {out}" in last, stderr[-2000:]
    assert len(list(out.glob("candidates/*/result.json"))) < 2  # it stopped before the sweep's end

    r = subprocess.run([sys.executable, "run_sweep.py", "resume", str(out)], cwd=ROOT, capture_output=True, text=True,
                       timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    trials = list(out.glob("candidates/*/config.json"))
    assert len(trials) == 2 and all((t.parent / "result.json").exists() for t in trials)
    assert (out / "leaderboard.csv").exists()
    first = json.loads((trials[0].parent / "result.json").read_text())
    assert first["glue"] and first["distill"]["step"] == 40
