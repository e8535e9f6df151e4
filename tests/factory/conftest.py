"""Fixtures for the model factory: a workspace with users, a CLI runner with the factory's
commands, small labelled folders in each layout."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from factory_helpers import FACTORY_COMMANDS, make_workspace  # noqa: E402


@pytest.fixture
def ws(home: Path):  # type: ignore[no-untyped-def]
    w = make_workspace(home)
    yield w
    w.close()


@pytest.fixture
def cm(home: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> Callable:
    """Run `casemate ARGS` in-process with the factory's commands; returns (exit code, stdout, stderr)."""
    from casemate import cli

    for name, target in FACTORY_COMMANDS.items():
        monkeypatch.setitem(cli.LAZY_COMMANDS, name, target)

    def run(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        rc = cli.main(["--home", str(home), *args])
        out = capsys.readouterr()
        return rc, out.out, out.err

    return run


@pytest.fixture(scope="session")
def slurm(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """A real single-node Slurm cluster for the session (munge, slurmctld, slurmd), stopped by pid."""
    import os

    from slurm_cluster import SlurmCluster, missing_binaries

    missing = missing_binaries()
    if missing:
        pytest.skip(f"Slurm binaries absent ({', '.join(missing)}): install the Debian packages slurmctld slurmd "
                    "slurm-client munge (scripts/system-packages.sh)")
    if os.geteuid() != 0:
        pytest.skip("the test cluster's slurmd runs jobs as any user, so it must start as root")
    try:
        import submitit  # noqa: F401
    except ModuleNotFoundError:
        pytest.skip("submitit is not installed (pip install submitit)")
    # A short folder: slurmd's spool paths and munge's socket path have length limits.
    cluster = SlurmCluster(tmp_path_factory.mktemp("slurm")).start()
    old = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(cluster.conf)
    yield cluster
    cluster.stop()
    if old is None:
        os.environ.pop("SLURM_CONF", None)
    else:
        os.environ["SLURM_CONF"] = old
