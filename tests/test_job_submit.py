"""`ray job submit --working-dir .` against a real local head bound to 127.0.0.1 (README's cluster path)."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import ROOT
from tests.tiny_spec import write_tiny_spec


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def ray_head(tmp_path):
    bin_dir = str(Path(sys.executable).parent)
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_USAGE_STATS_ENABLED": "0", "PATH": bin_dir + os.pathsep + os.environ["PATH"]}
    port, dash = _free_port(), _free_port()
    subprocess.run([f"{bin_dir}/ray", "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}",
                    "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}", f"--ray-client-server-port={_free_port()}",
                    "--num-cpus=2", "--include-dashboard=true", "--disable-usage-stats"],
                   env=env, check=True, capture_output=True, timeout=120)
    yield f"http://127.0.0.1:{dash}", env
    subprocess.run([f"{bin_dir}/ray", "stop", "--force"], env=env, capture_output=True, timeout=120)


def test_ray_job_submit_runs_a_tiny_sweep(ray_head, tmp_path):
    address, env = ray_head
    spec = write_tiny_spec(tmp_path / "tiny.yaml", name="tiny-job", lean=True)
    out = tmp_path / "results"
    cmd = [str(Path(sys.executable).parent / "ray"), "job", "submit", "--address", address, "--working-dir", ".",
           "--runtime-env", "cluster/job_runtime_env.yaml", "--",
           sys.executable, "run_sweep.py", str(spec), "--output", str(out), "--cache-dir", str(tmp_path / "cache")]
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0 and "succeeded" in r.stdout, r.stdout[-3000:] + r.stderr[-2000:]
    df = pd.read_csv(out / "leaderboard.csv")
    assert len(df) == 3 and (df["status"] == "done").all() and df["macro_score"].notna().all()
