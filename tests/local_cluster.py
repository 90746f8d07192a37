"""A Ray cluster of several nodes on this machine, for tests: each node is a `ray start --block`
process in its own session with a private --temp-dir and free ports, so a test can kill exactly one
node (its process group, then anything still naming its temp dir) and nothing else on the machine.
Never `ray stop`: it stops every Ray cluster on the machine, other users' included.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import psutil
import requests

from tests.conftest import ROOT

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Node:
    """One `ray start --block` process (head or worker) and its private temp dir."""

    def __init__(self, cmd: list[str], env: dict, log: Path, cwd: Path):
        # Short path: Ray's unix sockets live under the temp dir and must stay under 107 bytes.
        self.temp_dir = tempfile.mkdtemp(prefix="raynode-", dir="/tmp")
        self.log = log
        self.proc = subprocess.Popen([*cmd, f"--temp-dir={self.temp_dir}", "--block"], cwd=cwd, env=env,
                                     start_new_session=True, stdout=open(log, "w"), stderr=subprocess.STDOUT)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def tail(self, n: int = 3000) -> str:
        return self.log.read_text()[-n:]

    def kill(self, graceful: bool = False) -> None:
        """SIGKILL the node's session and every process that still names its temp dir (Ray workers
        and agents); with `graceful`, SIGTERM `ray start --block` first (it stops its children)."""
        if graceful and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()
        for p in psutil.process_iter(["pid", "cmdline"]):
            if any(self.temp_dir in arg for arg in (p.info["cmdline"] or [])):
                try:
                    p.kill()
                except psutil.NoSuchProcess:
                    pass

    def remove(self) -> None:
        self.kill(graceful=True)
        shutil.rmtree(self.temp_dir, ignore_errors=True)


class LocalCluster:
    """A token-authenticated head started as README says (cluster/local_head.sh, in `home`, a HOME
    with no token yet) plus worker nodes joined with `ray start --address`.

    `env` is what a client needs (RAY_AUTH_MODE=token, that HOME, RAY_ADDRESS); `gcs` the address
    for `--address`; `dashboard` the dashboard URL. `head_args`: further `ray start` flags."""

    def __init__(self, work: Path, head_args: Sequence[str] = ()):
        self.work = work
        home = work / "home"
        home.mkdir(parents=True, exist_ok=True)
        base = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
        self.env = {**base, "HOME": str(home), "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
                    "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "token",
                    "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0",  # nothing to drain at teardown
                    # A lost node is marked dead after 3 missed 1 s health checks, not Ray's 5 of 3 s
                    # (15 s): the node-loss test waits for it, and nothing else here depends on it.
                    "RAY_health_check_period_ms": "1000", "RAY_health_check_failure_threshold": "3"}
        dash, gcs = free_port(), free_port()
        self.gcs, self.dashboard = f"127.0.0.1:{gcs}", f"http://127.0.0.1:{dash}"
        # Ray processes that look their cluster up without an address (Train's placement-group
        # cleaner, the State API) otherwise find every Ray instance on the machine and give up.
        self.env["RAY_ADDRESS"] = self.gcs
        self.nodes: list[Node] = []
        self.head = self._start(["bash", str(ROOT / "cluster" / "local_head.sh"), f"--port={gcs}",
                                 f"--dashboard-port={dash}", f"--ray-client-server-port={free_port()}", *head_args],
                                "head")
        self._token = None

    def _start(self, cmd: list[str], name: str) -> Node:
        # Every node on one machine needs its own agent ports (the defaults are fixed numbers).
        cmd += [f"--dashboard-agent-listen-port={free_port()}", f"--metrics-export-port={free_port()}"]
        node = Node(cmd, self.env, self.work / f"{name}-{len(self.nodes)}.log", self.work)
        self.nodes.append(node)
        return node

    def add_worker(self, *args: str) -> Node:
        """Join a worker node started with `ray start` flags `args` (returns at once; see wait_for_nodes)."""
        return self._start([str(BIN / "ray"), "start", f"--address={self.gcs}", "--disable-usage-stats", *args],
                           "worker")

    def alive_nodes(self) -> list[dict]:
        """The nodes the GCS reports ALIVE (State API through the dashboard, with the token)."""
        if self._token is None:
            token_file = Path(self.env["HOME"]) / ".ray" / "auth_token"
            if not token_file.exists():
                return []
            self._token = token_file.read_text().strip()
        try:
            r = requests.get(f"{self.dashboard}/api/v0/nodes", params={"limit": 100, "detail": "true"},
                             headers={"Authorization": f"Bearer {self._token}"}, timeout=30)
        except requests.RequestException:
            return []
        if r.status_code != 200:
            return []
        return [n for n in r.json()["data"]["result"]["result"] if n["state"] == "ALIVE"]

    def wait_for_nodes(self, n: int, joining: Node | None = None, timeout: float = 300) -> float:
        """Wait until exactly `n` nodes are ALIVE (`joining`: a node that must not exit meanwhile);
        returns the seconds waited."""
        t0 = time.monotonic()
        while len(self.alive_nodes()) != n:
            for node in (self.head, joining):  # a node that exited will never come up
                assert node is None or node.alive(), node.tail()
            assert time.monotonic() - t0 < timeout, \
                f"{len(self.alive_nodes())} nodes alive, want {n}\n" + self.head.tail()
            time.sleep(1)
        return time.monotonic() - t0

    def shutdown(self) -> None:
        """Stop every node this cluster started (workers first), and only those."""
        for node in reversed(self.nodes):
            node.remove()
