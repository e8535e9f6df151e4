from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent.parent / "assistant"))
sys.path.insert(0, str(Path(__file__).parent))

from assistant_corpus import build_workspace  # noqa: E402
from fakes import HashEmbedder, ScriptedEngine  # noqa: E402
from live import serving  # noqa: E402


def _live(home: Path, embedder: Any, engine: Any, database_url: str | None = None) -> Iterator[dict[str, Any]]:
    from casemate.server.app import create_app

    data = build_workspace(home, embedder, engine, database_url)
    ws = data["ws"]
    admin = ws.acting_user("admin")
    names = ("nina", "dora", "sam", "alice", "tess")
    for name in names:
        ws.users.set_password(admin, name, f"pw-{name}-correct-horse")
    data["tokens"] = {name: ws.tokens.create(admin, for_user=name) for name in names}
    app = create_app(ws, data["assistant"], rate_per_minute=1000, login_per_minute=5)
    with serving(app) as url:
        data["url"] = url
        yield data
    ws.close()


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory, database_backend: Any) -> Iterator[dict[str, Any]]:
    """The real app under uvicorn on a loopback port, over the labelled corpus, with the fast
    stand-ins for the models (hashed embedder, scripted engine), on SQLite and on PostgreSQL."""
    yield from _live(Path(tmp_path_factory.mktemp("srv")) / "ws", HashEmbedder(), ScriptedEngine(),
                     database_backend.new_url())
