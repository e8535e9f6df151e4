"""Shared fixtures. Every test runs air-gapped: non-loopback connections are refused here and in
every Python subprocess (tests/_airgap/sitecustomize.py is put on PYTHONPATH)."""

from __future__ import annotations

import os
import sys
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
