from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from assistant_corpus import build_workspace  # noqa: E402


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    data = build_workspace(Path(tmp_path_factory.mktemp("corpus")) / "ws")
    yield data
    data["ws"].close()
