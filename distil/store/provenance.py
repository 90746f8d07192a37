"""Provenance of a sweep's numbers: what produced them, as hashes every row carries.

`collect` returns {'spec_sha256', 'git_commit', 'data_sha256': {file: sha256}, 'teacher_sha256'}:
the validated spec (as written to spec.json), the project's commit (`git describe --always
--dirty`, or `unknown` outside a git checkout, e.g. a `ray job submit` working dir), every local
data file the sweep reads (GLUE splits, corpus splits) and the teacher's weight files. File hashes
are cached by (path, size, mtime) under the cache dir, so the 128 MB corpus is hashed once.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def sha256_file(path: str | Path, cache_dir: str | Path | None = None) -> str:
    """Hex sha256 of a file's bytes, memoised in `cache_dir/file-hashes.json` by (path, size, mtime)."""
    path = Path(path).resolve()
    st = path.stat()
    key = f"{path}|{st.st_size}|{st.st_mtime_ns}"
    memo_file = Path(cache_dir) / "file-hashes.json" if cache_dir else None
    memo = json.loads(memo_file.read_text()) if memo_file and memo_file.exists() else {}
    if key not in memo:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 24), b""):
                h.update(block)
        memo[key] = h.hexdigest()
        if memo_file:
            memo_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = memo_file.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(memo))
            tmp.replace(memo_file)
    return memo[key]


def git_commit() -> str:
    """`git describe --always --dirty` of the project, or `unknown` (no git, or not a checkout)."""
    try:
        r = subprocess.run(
            ["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True, text=True, timeout=10
        )
        return r.stdout.strip() or "unknown"
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


def data_files(spec) -> list[Path]:
    """The local data files a sweep reads: GLUE task dirs' parquet files and the corpus splits
    (hub datasets have no local files: their ids and revisions are in spec.json)."""
    files = []
    if os.path.isdir(spec.glue.data):
        files += sorted(Path(spec.glue.data).glob("*/*.parquet"))
    if os.path.isdir(spec.corpus.path):
        files += [Path(spec.corpus.path) / f"{s}.parquet" for s in {spec.corpus.train_split, spec.corpus.eval_split}]
    return [f for f in files if f.is_file()]


def collect(spec, spec_json: str, teacher_dir: str, cache_dir: str | Path) -> dict:
    """The provenance dict every result.json carries (see the module docstring)."""
    weights = sorted(Path(teacher_dir).glob("*.safetensors")) or sorted(Path(teacher_dir).glob("pytorch_model*.bin"))
    if weights:
        teacher = hashlib.sha256("".join(sha256_file(w, cache_dir) for w in weights).encode()).hexdigest()
    else:  # a hub teacher used as is: its id names it (the hub revision is not pinned here)
        teacher = f"hub:{teacher_dir}"
    return {
        "spec_sha256": hashlib.sha256(spec_json.encode()).hexdigest(),
        "git_commit": git_commit(),
        "data_sha256": {str(f): sha256_file(f, cache_dir) for f in data_files(spec)},
        "teacher_sha256": teacher,
    }
