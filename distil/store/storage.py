"""Results on remote storage: `--output s3://bucket/sweep` (any URI pyarrow.fs opens: s3://, gs://, abfs://).

Ray writes its own state straight to the URI through pyarrow file systems: the Tune experiment
(`<uri>/tune`, what `resume` restores) and every Ray Train checkpoint (`<uri>/train`). Everything
else the sweep writes (JSON results, predictions, students, the Optuna study's SQLite file, the
leaderboard and report) is written to a local working copy and mirrored to the URI by the driver
after every trial event and at the end, so the URI always holds the sweep's record; `resume URI`
and `report URI` pull it back first. The working copy is `<cache dir>/remote/<scheme>/<bucket>/<path>`:
on a cluster the cache dir is shared storage already (the tokenised corpus lives there), so
every node sees the working copy too.

S3-compatible servers (MinIO, moto, Ceph) are reached with the standard AWS variables, which
pyarrow reads: AWS_ENDPOINT_URL=http://host:port, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
AWS_DEFAULT_REGION (or `?endpoint_override=…` in the URI).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from urllib.parse import urlparse

from distil.store.records import TRAIN_DIR, TUNE_DIR

RAY_OWNED = (TUNE_DIR, TRAIN_DIR)  # written to the URI by Ray itself, never through the working copy


def is_remote(location: str | Path) -> bool:
    """Whether `location` is a URI with a scheme other than file:// (s3://, gs://, ...)."""
    scheme = urlparse(str(location)).scheme
    return len(scheme) > 1 and scheme != "file"  # one letter: a Windows drive


def filesystem(uri: str):
    """(pyarrow.fs.FileSystem, path inside it) for a URI. Raises pyarrow's errors (ArrowInvalid,
    OSError) if the scheme is unknown or the store cannot be reached."""
    import pyarrow.fs as pafs

    return pafs.FileSystem.from_uri(uri)


def join(location: str, *parts: str) -> str:
    """`location/part/...` for a local path or a URI (keeps a URI's `?query`)."""
    if not is_remote(location):
        return str(Path(location).joinpath(*parts))
    base, _, query = location.partition("?")
    return "/".join([base.rstrip("/"), *parts]) + (f"?{query}" if query else "")


def is_dir(location: str | Path) -> bool:
    """Whether `location` (a local path or a URI) is a dir (on S3: a prefix with objects under it)."""
    if not is_remote(location):
        return Path(location).is_dir()
    return _remote_dir(*filesystem(str(location)))


def _remote_dir(fs, path: str) -> bool:
    import pyarrow.fs as pafs

    return fs.get_file_info(path).type == pafs.FileType.Directory


def remove_tree(location: str) -> None:
    """Delete a dir (local or remote) and everything in it; a missing dir is not an error."""
    if not is_remote(location):
        shutil.rmtree(location, ignore_errors=True)
        return
    fs, path = filesystem(location)  # opened once (an S3 file system may look up its region)
    if _remote_dir(fs, path):
        fs.delete_dir(path)


def working_copy(uri: str, cache_dir: str | Path) -> Path:
    """The local dir that mirrors `uri`: <cache_dir>/remote/<scheme>/<bucket>/<path>."""
    u = urlparse(uri)
    return Path(cache_dir).expanduser().resolve() / "remote" / u.scheme / u.netloc / u.path.strip("/")


class Mirror:
    """Keep `uri` equal to the local dir `local` (files under tune/ and train/ excepted: Ray
    writes those to the URI itself).

    push(): uploads the files that changed since the last push (size or mtime) and deletes remote
    files that are gone locally (a pruned student); pull(): replaces the local dir's files with
    the remote ones. Paths are relative, '/'-separated."""

    _open: dict[tuple[str, str], Mirror] = {}

    def __init__(self, local: str | Path, uri: str):
        self.local = Path(local)
        self.fs, self.root = filesystem(uri)
        self._pushed: dict[str, tuple[int, int]] = {}  # relative path -> (size, mtime_ns) uploaded

    @classmethod
    def of(cls, local: str | Path, uri: str) -> Mirror:
        """The process's one Mirror of (local, uri), so that the driver and the Tune callback
        (unpickled again by `resume`) share what has been pushed."""
        key = (str(Path(local)), uri)
        if key not in cls._open:
            cls._open[key] = cls(local, uri)
        return cls._open[key]

    def _local_files(self) -> dict[str, tuple[int, int]]:
        out = {}
        for p in self.local.rglob("*"):
            rel = p.relative_to(self.local).as_posix()
            if p.is_file() and not p.is_symlink() and rel.split("/")[0] not in RAY_OWNED:
                st = p.stat()
                out[rel] = (st.st_size, st.st_mtime_ns)
        return out

    def remote_files(self) -> dict[str, int]:
        """{relative path: size} of the files under the URI (Ray's tune/ and train/ excepted)."""
        import pyarrow.fs as pafs

        infos = self.fs.get_file_info(pafs.FileSelector(self.root, recursive=True, allow_not_found=True))
        rels = {i.path[len(self.root):].lstrip("/"): i.size for i in infos if i.type == pafs.FileType.File}
        return {r: s for r, s in rels.items() if r.split("/")[0] not in RAY_OWNED}

    def push(self) -> int:
        """Upload changed files, delete remote files gone locally; returns the number uploaded.
        Raises OSError if the store refuses a write."""
        now = self._local_files()
        changed = [r for r, stamp in now.items() if self._pushed.get(r) != stamp]
        for rel in changed:
            self._copy(str(self.local / rel), f"{self.root}/{rel}", upload=True)
            self._pushed[rel] = now[rel]
        for rel in set(self._pushed) - set(now):
            self.fs.delete_file(f"{self.root}/{rel}")
            del self._pushed[rel]
        return len(changed)

    def pull(self) -> int:
        """Make the local dir a copy of the remote files; returns the number downloaded."""
        remote = self.remote_files()
        shutil.rmtree(self.local, ignore_errors=True)
        for rel in remote:
            self._copy(f"{self.root}/{rel}", str(self.local / rel), upload=False)
        self.local.mkdir(parents=True, exist_ok=True)
        self._pushed = self._local_files()  # what was just pulled is what the URI holds
        return len(remote)

    def _copy(self, src: str, dst: str, upload: bool) -> None:
        """One file between the local disk and the store (pyarrow streams it)."""
        import pyarrow.fs as pafs

        local = pafs.LocalFileSystem()
        if not upload:  # S3 has no dirs to make; the local disk does
            Path(dst).parent.mkdir(parents=True, exist_ok=True)
        pafs.copy_files(src, dst, source_filesystem=local if upload else self.fs,
                        destination_filesystem=self.fs if upload else local)

    def holds_results(self) -> bool:
        """Whether anything is under the URI already (a sweep's record, or Ray's state of one)."""
        import pyarrow.fs as pafs

        return bool(self.fs.get_file_info(pafs.FileSelector(self.root, allow_not_found=True)))
