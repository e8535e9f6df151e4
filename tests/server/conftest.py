from __future__ import annotations

import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent.parent / "assistant"))

from assistant_corpus import build_workspace  # noqa: E402


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The real app under uvicorn on a loopback port, over the labelled corpus."""
    import uvicorn

    from casemate.server.app import create_app

    data = build_workspace(Path(tmp_path_factory.mktemp("srv")) / "ws")
    ws = data["ws"]
    admin = ws.acting_user("admin")
    for name in ("nina", "dora", "sam"):
        ws.users.set_password(admin, name, f"pw-{name}-correct-horse")
    data["tokens"] = {name: ws.tokens.create(admin, for_user=name) for name in ("nina", "dora", "sam")}
    app = create_app(ws, data["assistant"], rate_per_minute=1000, login_per_minute=5)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(200):
        if server.started:
            break
        time.sleep(0.05)
    data["url"] = f"http://127.0.0.1:{port}"
    yield data
    server.should_exit = True
    thread.join(timeout=10)
    ws.close()
