from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from assistant_corpus import build_workspace  # noqa: E402
from fakes import HashEmbedder, ScriptedEngine  # noqa: E402


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory, database_backend: Any) -> Iterator[dict[str, Any]]:
    """The labelled corpus with the fast stand-ins (hashed bag-of-words embedder, scripted engine),
    on SQLite and on PostgreSQL (tests/conftest.py: database_backend)."""
    data = build_workspace(Path(tmp_path_factory.mktemp("corpus")) / "ws", HashEmbedder(), ScriptedEngine(),
                           database_backend.new_url())
    yield data
    data["ws"].close()


@pytest.fixture(scope="session")
def real_corpus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The same corpus with the real models: e5-small and the default Qwen2.5-Coder-0.5B."""
    data = build_workspace(Path(tmp_path_factory.mktemp("real")) / "ws")
    yield data
    data["ws"].close()
