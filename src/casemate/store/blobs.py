"""Content-addressed blob storage (SHA-256).

A blob is staged in a temporary file, made durable, renamed to its hash and the rename made
durable, all before the catalog commits a row that points to it. A crash therefore leaves at
worst an unreferenced blob or a stale temporary file (removed at the next open), never a row
pointing to a missing or wrong blob. Staging is batched: one `commit()` makes many blobs durable
with two filesystem syncs instead of two fsyncs per file.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import fcntl
import hashlib
import os
import secrets
import shutil
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from casemate.errors import IntegrityError

CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class StagedBlob:
    sha256: str
    size: int


class BlobStore(ABC):
    """The interface a deployment swaps (filesystem here; S3 or another object store elsewhere)."""

    @abstractmethod
    def stage_bytes(self, data: bytes, sha256: str | None = None) -> StagedBlob: ...

    @abstractmethod
    def stage_file(self, path: Path, max_bytes: int | None = None) -> StagedBlob: ...

    @abstractmethod
    def commit(self, pool: ThreadPoolExecutor | None = None) -> None:
        """Make every blob staged since the last commit durable under its hash."""

    @abstractmethod
    def discard(self) -> None:
        """Forget blobs staged since the last commit."""

    @abstractmethod
    def exists(self, sha256: str) -> bool: ...

    @abstractmethod
    def path(self, sha256: str) -> Path: ...

    def read(self, sha256: str) -> bytes:
        """The blob's bytes, checked against its hash."""
        with self.open(sha256) as fh:
            data = fh.read()
        if hashlib.sha256(data).hexdigest() != sha256:
            raise IntegrityError(f"blob {sha256} is damaged: its content does not match its hash")
        return data

    def open(self, sha256: str) -> BinaryIO:
        return open(self.path(sha256), "rb")


def _load_syncfs():  # type: ignore[no-untyped-def]
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fn = libc.syncfs
        fn.argtypes = [ctypes.c_int]
        return fn
    except (OSError, AttributeError):
        return None


_SYNCFS = _load_syncfs()


class FileBlobStore(BlobStore):
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        # Each process stages in a folder of its own, held by a lock for as long as it lives, so a
        # second process never removes the first one's staged files.
        tmp_root = self.root / "tmp"
        tmp_root.mkdir(parents=True, exist_ok=True)
        self.tmp = tmp_root / f"{os.getpid()}-{secrets.token_hex(4)}"
        self.tmp.mkdir()
        self._lock_fd: int | None = os.open(self.tmp / ".lock", os.O_CREAT | os.O_RDWR, 0o600)
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self._pending: dict[str, Path] = {}  # sha -> staged temp file
        self._counter = 0
        self._lock = threading.Lock()  # staging runs in a thread pool during ingest
        self._known_dirs: set[str] = set()
        self._clean_tmp(tmp_root)

    def _clean_tmp(self, tmp_root: Path) -> None:
        """Remove what crashed processes staged: never referenced by a committed row."""
        for leftover in tmp_root.iterdir():
            if leftover == self.tmp:
                continue
            try:
                if not leftover.is_dir():
                    leftover.unlink()
                    continue
                fd = os.open(leftover / ".lock", os.O_CREAT | os.O_RDWR, 0o600)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # its process is alive and staging
                finally:
                    os.close(fd)
                shutil.rmtree(leftover, ignore_errors=True)
            except OSError:
                pass

    def close(self) -> None:
        """Forget staged blobs and remove this process's staging folder."""
        self.discard()
        if self._lock_fd is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            os.close(self._lock_fd)
            self._lock_fd = None

    def path(self, sha256: str) -> Path:
        return self.root / sha256[:2] / sha256

    def exists(self, sha256: str) -> bool:
        return sha256 in self._pending or self.path(sha256).exists()

    def _tmp_name(self) -> Path:
        with self._lock:
            self._counter += 1
            return self.tmp / f"{os.getpid()}-{threading.get_ident()}-{self._counter}.part"

    def _register(self, sha: str, tmp: Path) -> None:
        with self._lock:
            if sha in self._pending or os.path.exists(f"{self.root}/{sha[:2]}/{sha}"):
                tmp.unlink(missing_ok=True)
            else:
                self._pending[sha] = tmp

    def stage_bytes(self, data: bytes, sha256: str | None = None) -> StagedBlob:
        sha = sha256 or hashlib.sha256(data).hexdigest()
        if sha not in self._pending and not os.path.exists(f"{self.root}/{sha[:2]}/{sha}"):
            tmp = self._tmp_name()
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
            except BaseException:
                os.close(fd)
                tmp.unlink(missing_ok=True)
                raise
            os.close(fd)
            self._register(sha, tmp)
        return StagedBlob(sha, len(data))

    def stage_file(self, path: Path, max_bytes: int | None = None) -> StagedBlob:
        tmp = self._tmp_name()
        digest = hashlib.sha256()
        size = 0
        try:
            with open(path, "rb") as src, open(tmp, "xb") as dst:
                while chunk := src.read(CHUNK):
                    size += len(chunk)
                    if max_bytes is not None and size > max_bytes:
                        raise ValueError(f"larger than {max_bytes} bytes")
                    digest.update(chunk)
                    dst.write(chunk)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        sha = digest.hexdigest()
        self._register(sha, tmp)
        return StagedBlob(sha, size)

    def _sync(self, fds_from: list[Path]) -> None:
        if _SYNCFS is not None:
            fd = os.open(self.root, os.O_RDONLY)
            try:
                if _SYNCFS(fd) == 0:
                    return
            finally:
                os.close(fd)
        for p in fds_from:  # portable fallback: fsync each file
            fd = os.open(p, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def commit(self, pool: ThreadPoolExecutor | None = None) -> None:
        with self._lock:
            pending = self._pending
            self._pending = {}
        if not pending:
            return
        self._sync(list(pending.values()))  # the data, before it gets its final name
        dirs: set[Path] = set()
        for sha in pending:
            prefix = sha[:2]
            if prefix not in self._known_dirs:
                (self.root / prefix).mkdir(exist_ok=True)
                self._known_dirs.add(prefix)
            dirs.add(self.root / prefix)
        moves = [(tmp, f"{self.root}/{sha[:2]}/{sha}") for sha, tmp in pending.items()]
        if pool is not None and len(moves) > 8:
            list(pool.map(lambda m: os.replace(*m), moves))
        else:
            for tmp, final in moves:
                os.replace(tmp, final)
        # Then the renames themselves (the directory entries).
        if _SYNCFS is not None:
            self._sync([])
        else:
            for d in dirs:
                fd = os.open(d, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)

    def discard(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, {}
        for tmp in pending.values():
            tmp.unlink(missing_ok=True)

    def verify(self, sha256: str) -> bool:
        p = self.path(sha256)
        if not p.exists():
            return False
        digest = hashlib.sha256()
        with open(p, "rb") as fh:
            while chunk := fh.read(CHUNK):
                digest.update(chunk)
        return digest.hexdigest() == sha256

    def iter_stored(self) -> Iterator[tuple[str, Path]]:
        """Every committed blob: (sha256, path)."""
        for prefix in sorted(os.listdir(self.root)):
            folder = self.root / prefix
            if len(prefix) != 2 or not folder.is_dir():
                continue
            for name in os.listdir(folder):
                if len(name) == 64:
                    yield name, folder / name
