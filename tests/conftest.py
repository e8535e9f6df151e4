"""Shared fixtures. Every test runs air-gapped: non-loopback connections are refused here and in
every Python subprocess (tests/_airgap/sitecustomize.py is put on PYTHONPATH)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

AIRGAP_DIR = Path(__file__).resolve().parent / "_airgap"

sys.path.insert(0, str(AIRGAP_DIR))
from casemate_airgap_guard import install as _install_airgap  # noqa: E402
from casemate_testdata import SHARED_DATA, shared_data  # noqa: E402,F401  (tests import it from here)

_install_airgap()
os.environ["PYTHONPATH"] = os.pathsep.join(
    [str(AIRGAP_DIR)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
)
os.environ.setdefault("OMP_NUM_THREADS", "1")
# Tests never touch the developer's own workspace.
os.environ.pop("CASEMATE_HOME", None)
os.environ.pop("CASEMATE_USER", None)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """An empty folder for a workspace."""
    return tmp_path / "ws"


class DatabaseBackend:
    """Where a test's workspace keeps its metadata: `new_url()` is None for SQLite (the default,
    catalog.db in the workspace) or the URL of a fresh PostgreSQL database."""

    def __init__(self, name: str, cluster: object | None = None) -> None:
        self.name, self._cluster = name, cluster

    def new_url(self) -> str | None:
        return None if self._cluster is None else self._cluster.new_url()  # type: ignore[attr-defined]


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[object]:
    """One throwaway PostgreSQL cluster for the whole run (skips where none can start)."""
    from casemate_pg import cluster, unavailable

    why = unavailable()
    if why:
        pytest.skip(why)
    with cluster() as c:
        yield c


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def database_backend(request: pytest.FixtureRequest) -> DatabaseBackend:
    """THE parametrised fixture of the PostgreSQL parity runs: the catalog, assistant and server
    tests that use it (directly or through their workspace fixtures) run on both back ends."""
    if request.param == "sqlite":
        return DatabaseBackend("sqlite")
    return DatabaseBackend("postgres", request.getfixturevalue("pg_cluster"))
