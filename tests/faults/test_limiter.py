"""The rate limiters' memory stays bounded whatever names and addresses are sent: 100 000 distinct
keys through the server's limiter and the console's login limiter, and distinct user names from
distinct loopback addresses through the real login endpoint."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import httpx
import pytest

from casemate.console.sessions import MAX_ATTEMPT_KEYS, SessionStore, TooManyAttempts
from casemate.server.app import ApiError, RateLimiter, create_app

sys.path.insert(0, str(Path(__file__).parent.parent / "assistant"))
sys.path.insert(0, str(Path(__file__).parent.parent / "server"))

FLOOD = 100_000


def test_server_limiter_bounded_under_a_flood_of_names() -> None:
    limiter = RateLimiter(per_minute=3, max_keys=5_000)
    for i in range(FLOOD):
        limiter.check(f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}|user-{i}")
        assert i < 5_000 or len(limiter) == 5_000
    # still limiting: a key in use keeps its count
    for _ in range(3):
        limiter.check("hot")
    with pytest.raises(ApiError) as err:
        limiter.check("hot")
    assert err.value.status == 429


def test_idle_keys_leave_the_table() -> None:
    limiter = RateLimiter(per_minute=3)
    limiter.WINDOW_S = 0.05  # a minute, shortened
    for i in range(2_000):
        limiter.check(f"name-{i}")
    time.sleep(0.1)
    limiter.check("last")
    assert len(limiter) == 1


def test_console_login_attempts_bounded() -> None:
    store = SessionStore(idle_s=60, max_s=3600, login_per_minute=2)
    for i in range(FLOOD):
        store.check_attempt(f"127.0.{i >> 8 & 255}.{i & 255}|who-{i}")
    assert len(store._attempts) <= MAX_ATTEMPT_KEYS
    store.check_attempt("x|y")
    store.check_attempt("x|y")
    with pytest.raises(TooManyAttempts):
        store.check_attempt("x|y")


def test_login_endpoint_keeps_its_limiter_bounded(tmp_path: Path) -> None:
    from fakes import HashEmbedder, ScriptedEngine
    from live import serving

    from casemate.assistant.pipeline import Assistant
    from casemate.workspace import Workspace

    ws = Workspace.init(tmp_path / "ws")
    try:
        app = create_app(ws, Assistant(ws, embedder=HashEmbedder(), engine=ScriptedEngine()), login_per_minute=2)
        login = app.state.limiters["login"]
        login.max_keys = 4
        with serving(app) as url:
            for i in range(12):  # distinct names from distinct loopback addresses (argon2 each: few)
                transport = httpx.HTTPTransport(local_address=f"127.0.{i // 200}.{2 + i % 200}")
                with httpx.Client(transport=transport) as client:
                    r = client.post(f"{url}/api/login", json={"username": f"nobody{i}", "password": "x"})
                assert r.status_code == 401, r.text
                assert len(login) == min(i + 1, 4)
            for _ in range(2):
                assert httpx.post(f"{url}/api/login", json={"username": "same", "password": "x"}).status_code == 401
            assert httpx.post(f"{url}/api/login", json={"username": "same", "password": "x"}).status_code == 429
    finally:
        ws.close()
