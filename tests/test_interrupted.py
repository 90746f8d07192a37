"""A sweep killed mid-run (SIGKILL, no clean-up) still gives a leaderboard via `report`."""

import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from tests.conftest import ROOT
from tests.tiny_spec import write_tiny_spec


@pytest.mark.slow
def test_report_rebuilds_a_killed_sweep(tmp_path):
    spec = write_tiny_spec(tmp_path / "tiny.yaml", name="tiny-killed", lean=True)
    out = tmp_path / "results"
    proc = subprocess.Popen([sys.executable, "run_sweep.py", str(spec), "--output", str(out), "--cache-dir", str(tmp_path / "cache")],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 400
    def first_rows_written():  # the teacher's row is written when its runs end, not at the sweep's end
        return list(out.glob("candidates/*/result.json")) and (out / "teacher" / "result.json").exists()

    try:  # kill the driver and every Ray process it started once the first candidate and the teacher are done
        while not first_rows_written() and proc.poll() is None and time.time() < deadline:
            time.sleep(1)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert first_rows_written(), "the first candidate or the teacher's GLUE runs never finished"
    assert not (out / "leaderboard.csv").exists()  # killed before the sweep's own report

    r = subprocess.run([sys.executable, "run_sweep.py", "report", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    df = pd.read_csv(out / "leaderboard.csv")
    done = df[df["status"] == "done"]
    assert len(done) >= 1 and done["macro_score"].notna().all() and done["wnli"].notna().all()
    assert (df["kind"] == "student").sum() >= 1 and set(df["kind"]) == {"student", "teacher"}
    assert done.loc[done["kind"] == "student", "pct_teacher"].notna().all()  # the teacher row survived the kill
    best = df.loc[df["kind"] == "student", "macro_score"].idxmax()
    assert (out / "best_student" / "model.safetensors").exists() and df.loc[best, "model"] in (out / "best_student" / "README.md").read_text()
    for name in ("leaderboard.parquet", "leaderboard.md", "report.html", "plots/scores.png", "plots/pareto.png", "plots/progress.png"):
        assert (out / name).stat().st_size > 0, name
