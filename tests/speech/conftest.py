"""Speech fixtures: short speech made with espeak-ng at test time, one shared workspace."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from speech_helpers import EN_TEXT, speak  # noqa: E402


@pytest.fixture(scope="session")
def speech_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return Path(tmp_path_factory.mktemp("speech"))


@pytest.fixture(scope="session")
def en_wav(speech_dir: Path) -> Path:
    return speak(EN_TEXT, speech_dir / "en.wav")


@pytest.fixture(scope="session")
def shared_ws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """One workspace for the end-to-end tests: the model is assembled and loaded once."""
    from casemate.workspace import Workspace

    ws = Workspace.init(Path(tmp_path_factory.mktemp("speechws")) / "ws")
    admin = ws.acting_user("admin")
    ws.users.add(admin, "alice", clearance="S", roles=["analyst"])
    ws.users.add(admin, "bob", clearance="S//ALPHA", roles=["analyst"])
    ws.users.add(admin, "olivia", clearance="TS//ALPHA", roles=["analyst"])
    yield ws
    ws.close()
