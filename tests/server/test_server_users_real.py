"""Four users at once through the server with a real llama.cpp engine (SmolLM2, four parallel
slots), and the `openai` engine against a real OpenAI-compatible server on loopback.

Each user holds one compartment and has a canary document in it: every prompt llama.cpp receives,
and every response, may hold only its own user's canary; the four requests overlap inside
llama.cpp (slots), and no request reuses a cached prompt (`cache_n` 0: no prompt cache shared
between users)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fakes import HashEmbedder
from live import serving

from casemate.assistant.engine import OpenAIEngine, XLlamaEngine, smollm2_path

pytestmark = pytest.mark.slow  # real llama.cpp engines (SmolLM2: about 20 s of CPU for the module)

USERS = {"ula": "ULA", "vic": "VIC", "wes": "WES", "xan": "XAN"}  # user -> its one compartment
CANARY = {u: f"CANARY{c}{n}7" for n, (u, c) in enumerate(USERS.items(), start=1)}


class Recording:
    """The real engine, with what each request sent and got back recorded (per thread)."""

    def __init__(self, engine: Any) -> None:
        self.engine, self.name = engine, engine.name
        self.calls: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def stream_chat(self, messages: list[dict[str, str]], **kwargs: Any) -> Iterator[str]:
        stats = kwargs.pop("stats", None)
        own: dict[str, Any] = {}
        t0 = time.monotonic()
        pieces = []
        for piece in self.engine.stream_chat(messages, stats=own, **kwargs):
            pieces.append(piece)
            yield piece
        if stats is not None:
            stats.update(own)
        with self._lock:
            self.calls.append({"prompt": "\n".join(m["content"] for m in messages), "start": t0,
                               "end": time.monotonic(), "stats": own, "text": "".join(pieces)})


@pytest.fixture(scope="module")
def smollm2_slots() -> XLlamaEngine:
    return XLlamaEngine(smollm2_path(), n_ctx=1024, parallel=4)


@pytest.fixture(scope="module")
def four_users(tmp_path_factory: pytest.TempPathFactory, smollm2_slots: XLlamaEngine) -> Iterator[dict[str, Any]]:
    from casemate.assistant.pipeline import Assistant
    from casemate.server.app import create_app
    from casemate.workspace import Workspace

    ws = Workspace.init(Path(tmp_path_factory.mktemp("users")) / "ws")
    admin = ws.acting_user("admin")
    engine = Recording(smollm2_slots)
    tokens = {}
    for user, comp in USERS.items():
        ws.users.add(admin, user, clearance=f"S//{comp}", roles=["analyst"])
        tokens[user] = ws.tokens.create(admin, for_user=user)
    ws.catalog.put(admin, b"x", name="commun", kind="document", label="NP",
                   text="Le code du jour est donne par la note de chaque equipe.")
    assistant = Assistant(ws, embedder=HashEmbedder(), engine=engine)
    for user, comp in USERS.items():
        me = ws.acting_user(user)
        text = f"Note de l'equipe {comp} : le code du jour de l'equipe est {CANARY[user]}."
        ws.catalog.put(me, text.encode(), name=f"note {comp}", kind="document", label=f"S//{comp}", text=text)
        assistant.index_all(me)  # each indexes what only they may read
    app = create_app(ws, assistant, rate_per_minute=1000)
    with serving(app) as url:
        yield {"ws": ws, "url": url, "tokens": tokens, "engine": engine}
    ws.close()


def test_four_users_at_once_each_only_from_their_own_documents(four_users: dict[str, Any]) -> None:
    url, engine = four_users["url"], four_users["engine"]
    engine.calls.clear()
    barrier = threading.Barrier(len(USERS))
    out: dict[str, httpx.Response] = {}

    def ask(user: str) -> None:
        barrier.wait()
        out[user] = httpx.post(url + "/v1/chat/completions", timeout=300,
                               headers={"Authorization": "Bearer " + four_users["tokens"][user]},
                               json={"model": "casemate-assistant", "max_tokens": 24,
                                     "messages": [{"role": "user", "content": "Quel est le code du jour de l'equipe ?"}]})

    threads = [threading.Thread(target=ask, args=(u,)) for u in USERS]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(engine.calls) == len(USERS)
    for user, r in out.items():
        assert r.status_code == 200, r.text
        body = r.json()
        assert {c["label"] for c in body["citations"]} <= {"NP", f"S//{USERS[user]}"}
        assert any(c["label"] == f"S//{USERS[user]}" for c in body["citations"])  # its own note was used
        others = [CANARY[o] for o in USERS if o != user]
        assert not any(c in r.text for c in others), r.text
    for call in engine.calls:
        present = [u for u in USERS if CANARY[u] in call["prompt"]]
        assert len(present) == 1, present  # one user's sources per prompt, never two
        assert not any(CANARY[o] in call["text"] for o in USERS if o not in present)
        # no prompt reused from a cache, whatever the slot
        assert call["stats"]["timings"]["cache_n"] == 0
        assert call["stats"]["timings"]["prompt_n"] == call["stats"]["usage"]["prompt_tokens"]
    # the requests ran at once in llama.cpp's slots, not one after the other
    latest_start = max(c["start"] for c in engine.calls)
    earliest_end = min(c["end"] for c in engine.calls)
    assert latest_start < earliest_end


def test_openai_engine_answers_through_the_pipeline(four_users: dict[str, Any],
                                                     smollm2_slots: XLlamaEngine) -> None:
    """The assistant configured with an upstream OpenAI-compatible server (llama.cpp's own, on
    loopback, with its API key): streamed answer, token counts from the server's usage."""
    from casemate.assistant.pipeline import Assistant

    ws = four_users["ws"]
    upstream = OpenAIEngine(smollm2_slots.listening_address + "/v1", "smollm2", smollm2_slots._api_key)
    assistant = Assistant(ws, embedder=HashEmbedder(), engine=upstream)
    stream = assistant.ask_stream(ws.acting_user("vic"), "Quel est le code du jour de l'equipe ?", max_tokens=24)
    pieces = list(stream)
    assert len(pieces) > 1 and stream.answer is not None
    assert stream.stats["usage"]["completion_tokens"] >= 1 and stream.stats["usage"]["prompt_tokens"] > 20
    assert {c.label.display for c in stream.citations}  # sources were given
    assert CANARY["ula"] not in "".join(pieces) + stream.answer.text


def test_openai_engine_asks_the_upstream_not_to_reuse_cached_prompts() -> None:
    """llama.cpp's server keeps the last prompt in its slot and reuses it unless told not to: the
    same request twice through one slot must evaluate the whole prompt both times."""
    upstream = XLlamaEngine(smollm2_path(), n_ctx=512, parallel=1)
    client = OpenAIEngine(upstream.listening_address + "/v1", "smollm2", upstream._api_key)
    msgs = [{"role": "user", "content": "Quel est le code du jour de l'equipe ULA ? Reponds en trois mots."}]
    runs = []
    for _ in range(2):
        stats: dict[str, Any] = {}
        assert "".join(client.stream_chat(msgs, max_tokens=4, stats=stats))
        runs.append(stats["timings"])
    assert runs[1]["cache_n"] == 0 and runs[1]["prompt_n"] == runs[0]["prompt_n"] > 10
