"""Shared fixtures. Every test runs air-gapped: non-loopback connections are refused here and in
every Python subprocess (tests/_airgap/sitecustomize.py is put on PYTHONPATH)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
AIRGAP_DIR = Path(__file__).resolve().parent / "_airgap"
SHARED_DATA = ROOT.parent / "shared" / "data"

sys.path.insert(0, str(AIRGAP_DIR))
from casemate_airgap_guard import install as _install_airgap  # noqa: E402

_install_airgap()
os.environ["PYTHONPATH"] = os.pathsep.join(
    [str(AIRGAP_DIR)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
)
os.environ.setdefault("OMP_NUM_THREADS", "1")
# Tests never touch the developer's own workspace.
os.environ.pop("CASEMATE_HOME", None)
os.environ.pop("CASEMATE_USER", None)


def shared_data(*parts: str) -> Path:
    """A path under ../shared/data; skips the test, saying so, when the data is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data absent: {path} (the shared/ folder beside the checkout)")
    return path


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """An empty folder for a workspace."""
    return tmp_path / "ws"
