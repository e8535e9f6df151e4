"""A throwaway PostgreSQL cluster on a Unix socket (no TCP listener at all), for the tests that run
on both database back ends. `cluster()` yields a `Cluster` whose `new_url()` creates a fresh,
empty database; `unavailable()` says why none can start here (None when one can)."""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for base in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (base / name).exists():
            return str(base / name)
    return None


def unavailable() -> str | None:
    if not _pg_bin("initdb") or not _pg_bin("pg_ctl"):
        return "PostgreSQL server binaries absent (Debian package postgresql): SQLite-only run"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg not installed (dev extras)"
    if os.geteuid() == 0:  # the server refuses to run as root
        if shutil.which("runuser") is None:
            return "running as root without runuser: cannot start PostgreSQL"
        import pwd

        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "no 'postgres' system user to run the server as"
    return None


class Cluster:
    def __init__(self, socket_dir: Path) -> None:
        self.socket_dir = socket_dir
        self._n = itertools.count(1)

    def new_url(self) -> str:
        """A SQLAlchemy URL of a new empty database."""
        import psycopg

        name = f"casemate_{next(self._n)}"
        with psycopg.connect(f"host={self.socket_dir} user=casemate dbname=postgres", autocommit=True) as c:
            c.execute(f"CREATE DATABASE {name}")
        return f"postgresql+psycopg://casemate@/{name}?host={self.socket_dir}"


@contextmanager
def cluster() -> Iterator[Cluster]:
    why = unavailable()
    if why:
        raise RuntimeError(why)
    import psycopg

    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    assert initdb and pg_ctl
    # Not under pytest's tmp root: that folder is private to root and the server runs as postgres.
    root = Path(tempfile.mkdtemp(prefix="casemate-pg-"))
    prefix: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        prefix = ["runuser", "-u", "postgres", "--"]
    data = root / "data"
    try:
        subprocess.run(prefix + [initdb, "-D", str(data), "-A", "trust", "-U", "casemate"], check=True,
                       capture_output=True)
        # fsync off: a throwaway cluster (the crash tests run on SQLite, which keeps its syncs)
        subprocess.run(prefix + [pg_ctl, "-D", str(data), "-w", "-l", str(root / "log"), "-o",
                                 f"-k {root} -c listen_addresses='' -c fsync=off -c max_connections=200", "start"],
                       check=True, capture_output=True)
        deadline = time.time() + 20
        while True:
            try:
                with psycopg.connect(f"host={root} user=casemate dbname=postgres", autocommit=True):
                    break
            except psycopg.OperationalError:
                if time.time() > deadline:
                    raise
                time.sleep(0.3)
        yield Cluster(root)
    finally:
        subprocess.run(prefix + [pg_ctl, "-D", str(data), "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)
