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
