"""llama.cpp's own listener (opened by xllamacpp) is loopback-only and refuses unauthenticated calls."""

from __future__ import annotations

from urllib.parse import urlparse

import httpx
import pytest

from casemate.assistant.engine import EngineError, OpenAIEngine, XLlamaEngine, smollm2_path
from casemate.errors import ModelMissing


@pytest.fixture(scope="module")
def engine() -> XLlamaEngine:
    return XLlamaEngine(smollm2_path())


def test_listener_is_loopback_and_needs_the_key(engine: XLlamaEngine) -> None:
    addr = engine.listening_address
    assert urlparse(addr).hostname == "127.0.0.1"
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    assert httpx.post(addr + "/v1/chat/completions", json=body).status_code == 401
    assert httpx.post(addr + "/v1/chat/completions", json=body,
                      headers={"Authorization": "Bearer guessed"}).status_code == 401
    assert httpx.get(addr + "/v1/models").status_code == 401
    key = {"Authorization": "Bearer " + engine._api_key}
    for path in ("/slots", "/metrics"):
        assert httpx.get(addr + path).status_code == 401  # no key: refused before anything else
        assert httpx.get(addr + path, headers=key).status_code == 501  # with the key: the endpoint is off


def test_openai_engine_against_an_authenticated_upstream(engine: XLlamaEngine) -> None:
    """The upstream implementation, tested against a real OpenAI-compatible server (llama.cpp's)."""
    msgs = [{"role": "user", "content": "Say hello."}]
    good = OpenAIEngine(engine.listening_address + "/v1", "smollm2", engine._api_key)
    assert "".join(good.stream_chat(msgs, max_tokens=8)).strip()
    with pytest.raises(EngineError, match="401"):
        "".join(OpenAIEngine(engine.listening_address + "/v1", "smollm2", "wrong").stream_chat(msgs, max_tokens=4))


def test_streams_and_missing_model_is_clear(engine: XLlamaEngine, tmp_path) -> None:  # type: ignore[no-untyped-def]
    stats: dict = {}
    pieces = list(engine.stream_chat([{"role": "user", "content": "Count to five."}], max_tokens=12, stats=stats))
    assert len(pieces) > 1
    # llama.cpp's own counts; the prompt cache is off (a cross-user timing oracle), so nothing is reused
    assert stats["usage"]["completion_tokens"] == stats["timings"]["predicted_n"] <= 12
    assert engine.request([])["cache_prompt"] is False
    again: dict = {}
    list(engine.stream_chat([{"role": "user", "content": "Count to five."}], max_tokens=12, stats=again))
    assert again["timings"]["cache_n"] == 0 and again["timings"]["prompt_n"] == stats["usage"]["prompt_tokens"]
    with pytest.raises(ModelMissing, match="copy the .gguf"):
        XLlamaEngine(tmp_path / "absent.gguf")
