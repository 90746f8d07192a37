"""The README's local head (`cluster/local_head.sh`) starts Ray with token authentication on.

A new user's machine: a temporary HOME with no `~/.ray/auth_token`. The job API refuses a request
without the token (401) or with a wrong one (403), answers the token (200), and `ray job submit`
with `RAY_AUTH_MODE=token` (the README's client command) runs a tiny sweep to its leaderboard.
The head is started with `--block` in its own session and killed by process group at teardown:
never `ray stop`, which would stop every Ray cluster on the machine.
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest
import requests

from tests.conftest import ROOT
from tests.tiny_spec import write_tiny_spec

BIN = Path(sys.executable).parent


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _kill_head(head, temp_dir):
    """SIGTERM `ray start --block` (it stops its own children), SIGKILL its process group if it
    lingers, then any process that still names our private temp dir (job drivers run in their
    own sessions). Nothing else on the machine is touched."""
    if head.poll() is None:
        head.terminate()
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(head.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    head.wait()
    for p in psutil.process_iter(["pid", "cmdline"]):
        if any(temp_dir in arg for arg in (p.info["cmdline"] or [])):
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
    shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.fixture
def readme_head(tmp_path):
    """The head as README starts it, in a HOME with no token; yields (dashboard URL, GCS address,
    HOME, env without RAY_AUTH_MODE)."""
    home = tmp_path / "home"
    home.mkdir()
    # Short path: Ray's unix sockets live under the temp dir and must stay under 107 bytes.
    temp_dir = tempfile.mkdtemp(prefix="rayauth-", dir="/tmp")
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env = {**base_env, "HOME": str(home), "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
           "RAY_USAGE_STATS_ENABLED": "0",
           "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0"}  # nothing to drain at teardown: stop in seconds, not 30
    dash, gcs = _free_port(), _free_port()
    cmd = ["bash", str(ROOT / "cluster" / "local_head.sh"), f"--port={gcs}", f"--dashboard-port={dash}",
           f"--ray-client-server-port={_free_port()}", f"--dashboard-agent-listen-port={_free_port()}",
           f"--temp-dir={temp_dir}", "--num-cpus=2", "--block"]
    head = subprocess.Popen(cmd, cwd=tmp_path, env=env, start_new_session=True,
                            stdout=open(tmp_path / "head.log", "w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{dash}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert head.poll() is None, (tmp_path / "head.log").read_text()[-3000:]
            try:
                if requests.get(f"{url}/api/gcs_healthz", timeout=5).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, (tmp_path / "head.log").read_text()[-3000:]
            time.sleep(1)
        yield url, f"127.0.0.1:{gcs}", home, env
    finally:
        _kill_head(head, temp_dir)


@pytest.mark.slow
def test_readme_head_requires_the_token_and_runs_a_submitted_sweep(readme_head, tmp_path, capsys):
    url, gcs, home, env = readme_head
    token_file = home / ".ray" / "auth_token"
    assert token_file.stat().st_mode & 0o077 == 0, "the token must be readable by its owner only"
    token = token_file.read_text().strip()

    mode = requests.get(f"{url}/api/authentication_mode", timeout=10).json()
    no_token = requests.get(f"{url}/api/jobs/", timeout=10)
    wrong = requests.get(f"{url}/api/jobs/", headers={"Authorization": "Bearer " + "0" * len(token)}, timeout=10)
    good = requests.get(f"{url}/api/jobs/", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    with capsys.disabled():  # the answers go in the closing note
        print(f"\nauthentication_mode={mode}; GET /api/jobs/: no token {no_token.status_code} "
              f"{no_token.text!r}; wrong token {wrong.status_code} {wrong.text!r}; token {good.status_code} {good.text!r}")
    assert mode == {"authentication_mode": "token"}
    assert no_token.status_code == 401
    assert wrong.status_code == 403
    assert good.status_code == 200 and good.json() == []

    # The GCS (gRPC, listening on every interface) refuses a client that sends no token.
    ray_status = [str(BIN / "ray"), "status", "--address", gcs]
    r = subprocess.run(ray_status, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "AuthenticationError" in r.stderr, r.stderr[-2000:]
    r = subprocess.run(ray_status, cwd=tmp_path, env={**env, "RAY_AUTH_MODE": "token"}, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "AuthenticationError" not in r.stderr, r.stderr[-2000:]  # the autoscaler may not report yet

    # The dashboard/job server listens on loopback only (read from the socket table, no traffic).
    port = int(url.rsplit(":", 1)[1])
    listeners = {c.laddr.ip for c in psutil.net_connections("tcp") if c.status == "LISTEN" and c.laddr.port == port}
    assert listeners == {"127.0.0.1"}, listeners

    # The README's client command: RAY_AUTH_MODE=token, the token read from ~/.ray/auth_token.
    spec = write_tiny_spec(tmp_path / "tiny.yaml", name="tiny-job", lean=True)
    out = tmp_path / "results"
    cmd = [str(BIN / "ray"), "job", "submit", "--address", url, "--working-dir", ".",
           "--runtime-env", "cluster/job_runtime_env.yaml", "--",
           sys.executable, "run_sweep.py", str(spec), "--output", str(out), "--cache-dir", str(tmp_path / "cache")]
    r = subprocess.run(cmd, cwd=ROOT, env={**env, "RAY_AUTH_MODE": "token"}, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0 and "succeeded" in r.stdout, r.stdout[-3000:] + r.stderr[-2000:]
    df = pd.read_csv(out / "leaderboard.csv")
    assert len(df) == 3 and (df["status"] == "done").all() and df["macro_score"].notna().all()
