"""Results on S3-compatible storage, against a real S3 server on 127.0.0.1 (moto's server mode:
HTTP, SigV4, multipart uploads; the same client code paths as AWS or MinIO)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.fs as pafs
import pytest

from distil.store import storage
from tests.conftest import ROOT
from tests.tiny_spec import TINY_EARLY_STOPPING, write_tiny_spec

BUCKET = "sweeps"


@pytest.fixture(scope="module")
def s3():
    """A moto S3 server on 127.0.0.1 with the bucket `sweeps`; the env a client needs to reach it."""
    server_mod = pytest.importorskip("moto.server", reason="pip install 'moto[server]' (the test extra)")
    server = server_mod.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {"AWS_ENDPOINT_URL": f"http://{host}:{port}", "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # pyarrow reads them when a file system is made, in this process and in children
    pafs.S3FileSystem(endpoint_override=env["AWS_ENDPOINT_URL"], allow_bucket_creation=True).create_dir(BUCKET)
    yield env
    for k, v in saved.items():
        os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    server.stop()


def _remote(uri: str) -> dict[str, bytes]:
    fs, root = storage.filesystem(uri)
    infos = fs.get_file_info(pafs.FileSelector(root, recursive=True, allow_not_found=True))
    out = {}
    for i in infos:
        if i.type == pafs.FileType.File:
            with fs.open_input_stream(i.path) as f:
                out[i.path[len(root) + 1:]] = f.read()
    return out


def test_uri_helpers():
    assert storage.is_remote("s3://b/p") and storage.is_remote("gs://b/p")
    assert not storage.is_remote("/abs/dir") and not storage.is_remote("rel/dir") and not storage.is_remote("C:\\x")
    assert not storage.is_remote("file:///abs/dir")
    assert storage.join("s3://b/p/", "train") == "s3://b/p/train"
    assert storage.join("s3://b/p?endpoint_override=h:9000", "tune") == "s3://b/p/tune?endpoint_override=h:9000"
    assert storage.join("/r/x", "train") == "/r/x/train"
    assert storage.working_copy("s3://b/sweep/one", "/c") == Path("/c/remote/s3/b/sweep/one")


def test_mirror_pushes_changes_and_deletions_and_pulls_them_back(tmp_path, s3):
    uri = f"s3://{BUCKET}/mirror"
    local = tmp_path / "work"
    (local / "candidates" / "a").mkdir(parents=True)
    (local / "candidates" / "a" / "result.json").write_text('{"macro": 1}')
    (local / "optuna.db").write_bytes(os.urandom(3 << 20))  # 3 MiB: a multipart upload
    (local / "tune").mkdir()
    (local / "tune" / "state.json").write_text("Ray's own")  # Ray writes tune/ itself: never mirrored
    m = storage.Mirror(local, uri)
    assert m.push() == 2
    assert set(_remote(uri)) == {"candidates/a/result.json", "optuna.db"}
    assert m.push() == 0  # nothing changed, nothing sent
    (local / "candidates" / "a" / "result.json").write_text('{"macro": 22}')
    (local / "candidates" / "b").mkdir()
    (local / "candidates" / "b" / "status.json").write_text("{}")
    (local / "optuna.db").unlink()
    assert m.push() == 2
    remote = _remote(uri)
    assert remote == {"candidates/a/result.json": b'{"macro": 22}', "candidates/b/status.json": b"{}"}
    copy = storage.Mirror(tmp_path / "elsewhere", uri)
    assert copy.pull() == 2
    assert json.loads((tmp_path / "elsewhere" / "candidates" / "a" / "result.json").read_text()) == {"macro": 22}
    assert copy.push() == 0  # a fresh pull is in sync
    assert storage.Mirror(tmp_path / "w2", f"s3://{BUCKET}/nothing-here").holds_results() is False
    assert m.holds_results() is True


def test_bad_remote_outputs_are_one_line_and_change_nothing(tmp_path, s3, capsys):
    import run_sweep

    spec = write_tiny_spec(tmp_path / "tiny.yaml", lean=True)
    cache = str(tmp_path / "cache")
    assert run_sweep.main(["run", str(spec), "--output", "s3://no-such-bucket/x", "--cache-dir", cache]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "--output: bucket 'no-such-bucket'" in err and "create it" in err
    fs, _ = storage.filesystem(f"s3://{BUCKET}")
    with fs.open_output_stream(f"{BUCKET}/taken/leaderboard.csv") as f:
        f.write(b"model\nteacher\n")
    assert run_sweep.main(["run", str(spec), "--output", f"s3://{BUCKET}/taken", "--cache-dir", cache]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "already holds results" in err and f"resume s3://{BUCKET}/taken" in err
    assert _remote(f"s3://{BUCKET}/taken") == {"leaderboard.csv": b"model\nteacher\n"}  # untouched, no probe left
    for command in ("report", "resume"):
        assert run_sweep.main([command, f"s3://{BUCKET}/empty", "--cache-dir", cache]) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and "holds no sweep results" in err


@pytest.mark.slow
@pytest.mark.xdist_group("ray-sweeps")  # one sweep at a time (tests/conftest.py)
def test_a_sweep_writes_its_results_checkpoints_and_study_to_s3(tmp_path, s3, sweep_cache):
    """`--output s3://…`: Tune's experiment and the Train runs on S3, the results mirrored there;
    `report` rebuilds from the URI alone; `resume` continues from the URI alone."""
    import optuna
    import pandas as pd

    uri = f"s3://{BUCKET}/tiny"
    # Early stopping: the trial's second rung continues its Ray Train run from the first rung's checkpoint,
    # which only S3 holds. One candidate: a second would only add a trial stopped on a local decision.
    spec = write_tiny_spec(tmp_path / "tiny.yaml", lean=True, early_stopping=TINY_EARLY_STOPPING, num_candidates=1)
    cache = sweep_cache  # the working copy lands in it; `report` below uses a fresh one
    env = {**os.environ, **s3}
    cmd = [sys.executable, "run_sweep.py"]
    r = subprocess.run([*cmd, "run", str(spec), "--output", uri, "--cache-dir", str(cache)], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"results: {uri}" in r.stdout
    remote = _remote(uri)
    trials = sorted({k.split("/")[1] for k in remote if k.startswith("candidates/")})
    finished = sorted(t for t in trials if f"candidates/{t}/result.json" in remote)
    assert len(trials) == 1 and finished == trials
    for t in finished:  # Ray Train continued from its checkpoint, which only S3 held (no local train/ dir)
        rungs = json.loads(remote[f"candidates/{t}/result.json"])["rungs"]
        assert rungs[0]["distill"]["resumed_from_step"] == 0
        assert rungs[1]["distill"]["resumed_from_step"] == rungs[0]["step"] > 0
    for name in ("spec.json", "run.json", "optuna.db", "leaderboard.csv", "leaderboard.md", "report.html",
                 "teacher/result.json", "best_student/model.safetensors"):
        assert name in remote, name
    # Ray's own state went to the URI, not to the working copy.
    fs, root = storage.filesystem(uri)
    tune_files = [i.path for i in fs.get_file_info(pafs.FileSelector(f"{root}/tune", recursive=True))]
    assert any(p.rsplit("/", 1)[-1].startswith("experiment_state") for p in tune_files)
    work = storage.working_copy(uri, cache)
    assert not (work / "tune").exists() and not (work / "train").exists()
    # The janitor deleted each ended trial's Train checkpoints from s3://…/train.
    left = fs.get_file_info(pafs.FileSelector(f"{root}/train", recursive=True, allow_not_found=True))
    assert not [i.path for i in left if i.type == pafs.FileType.File], [i.path for i in left]

    # `report URI` from another machine's point of view: a fresh cache dir, only the URI.
    r = subprocess.run([*cmd, "report", uri, "--cache-dir", str(tmp_path / "other")], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    pulled = storage.working_copy(uri, tmp_path / "other")
    before = pd.read_csv(work / "leaderboard.csv").set_index("model")
    after = pd.read_csv(pulled / "leaderboard.csv").set_index("model")
    pd.testing.assert_series_equal(before["macro_score"], after["macro_score"])
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{pulled / 'optuna.db'}")
    assert len(study.trials) == 1 and study.trials[0].state == optuna.trial.TrialState.COMPLETE

    # `resume URI` with the working copy gone: pulled back, Tune restored from s3://…/tune.
    storage.remove_tree(str(work))
    r = subprocess.run([*cmd, "resume", uri], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (work / "leaderboard.csv").exists() and not (work / "tune").exists()
    assert sorted(p.parent.name for p in (work / "candidates").glob("*/result.json")) == finished



def test_preflight_names_a_uri_pyarrow_cannot_open():
    from distil.preflight import check_remote
    from distil.config.spec import SpecError

    with pytest.raises(SpecError, match=r"^--output: cannot open nosuch://b/x \(Unrecognized filesystem type"):
        check_remote("nosuch://b/x", "--output")
