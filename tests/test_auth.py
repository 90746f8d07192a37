"""The README's local head (`cluster/local_head.sh`) starts Ray with token authentication on.

A new user's machine: a temporary HOME with no `~/.ray/auth_token`. The job API refuses a request
without the token (401) or with a wrong one (403) and answers the token (200); the GCS refuses a
client without the token; the dashboard listens on loopback only. That `ray job submit` with
`RAY_AUTH_MODE=token` (the README's client command) runs a sweep to its leaderboard is
tests/test_node_loss.py's sweep, submitted that way to the same kind of head: one sweep, not two.
The head runs in its own session and is killed by process group at teardown (tests/local_cluster.py):
never `ray stop`, which would stop every Ray cluster on the machine.
"""

import subprocess

import psutil
import pytest
import requests

from tests.local_cluster import BIN, LocalCluster


@pytest.mark.slow
def test_readme_head_requires_the_token(tmp_path, capsys):
    cluster = LocalCluster(tmp_path, ["--num-cpus=0"])  # no work runs here: the checks need the head alone
    try:
        cluster.wait_for_nodes(1)
        url, gcs, home = cluster.dashboard, cluster.gcs, tmp_path / "home"
        no_auth_env = {k: v for k, v in cluster.env.items() if k != "RAY_AUTH_MODE"}
        token_file = home / ".ray" / "auth_token"
        assert token_file.stat().st_mode & 0o077 == 0, "the token must be readable by its owner only"
        token = token_file.read_text().strip()

        mode = requests.get(f"{url}/api/authentication_mode", timeout=10).json()
        no_token = requests.get(f"{url}/api/jobs/", timeout=10)
        wrong = requests.get(f"{url}/api/jobs/", headers={"Authorization": "Bearer " + "0" * len(token)}, timeout=10)
        good = requests.get(f"{url}/api/jobs/", headers={"Authorization": f"Bearer {token}"}, timeout=10)
        with capsys.disabled():  # the answers go in the closing note
            print(f"\nauthentication_mode={mode}; GET /api/jobs/: no token {no_token.status_code} {no_token.text!r}; "
                  f"wrong token {wrong.status_code} {wrong.text!r}; token {good.status_code} {good.text!r}")
        assert mode == {"authentication_mode": "token"}
        assert no_token.status_code == 401
        assert wrong.status_code == 403
        assert good.status_code == 200 and good.json() == []

        # The GCS (gRPC, listening on every interface) refuses a client that sends no token.
        ray_status = [str(BIN / "ray"), "status", "--address", gcs]
        r = subprocess.run(ray_status, cwd=tmp_path, env=no_auth_env, capture_output=True, text=True, timeout=120)
        assert r.returncode != 0 and "AuthenticationError" in r.stderr, r.stderr[-2000:]
        r = subprocess.run(ray_status, cwd=tmp_path, env=cluster.env, capture_output=True, text=True, timeout=120)
        # The autoscaler may not report yet: only the authentication is asserted.
        assert r.returncode == 0 and "AuthenticationError" not in r.stderr, r.stderr[-2000:]

        # The dashboard/job server listens on loopback only (read from the socket table, no traffic).
        port = int(url.rsplit(":", 1)[1])
        listeners = {c.laddr.ip for c in psutil.net_connections("tcp") if c.status == "LISTEN" and c.laddr.port == port}
        assert listeners == {"127.0.0.1"}, listeners
    finally:
        cluster.shutdown()
