"""Eight threads on one workspace at once for 30 s (ingest, ask, declassify, audit tail, reads):
no error, the audit chain verifies, and every change's entry is there exactly once.

The assistant runs with a fake embedder and chat engine behind its real interfaces (the models are
not what is under test here: the shared database, units of work and audit queue are)."""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from casemate_fakes import HashEmbedder

from casemate.config import HooksConfig
from casemate.security.labels import format_label
from casemate.workspace import Workspace

SECONDS = float(os.environ.get("CASEMATE_STRESS_S", "30"))


class EchoEngine:
    name = "test-echo-engine"

    def stream_chat(self, messages: list[dict[str, str]], *, max_tokens: int = 256, temperature: float = 0.0,
                    stats: dict[str, Any] | None = None) -> Iterator[str]:
        yield "Le convoi part à 6 h [1]."


@pytest.mark.slow
def test_eight_threads_share_one_workspace(home, tmp_path) -> None:
    from casemate.assistant.pipeline import Assistant

    ws = Workspace.init(home)
    ws.config = ws.config.model_copy(update={"hooks": HooksConfig(after_ingest=())})
    admin = ws.acting_user("admin")
    ws.users.add(admin, "sam", "S", ["officer"])
    ws.users.add(admin, "dana", "DR", ["analyst"])
    sam, dana = ws.acting_user("sam"), ws.acting_user("dana")
    secrets = [ws.catalog.put(admin, f"rapport secret {i}".encode(), name=f"s{i}.txt", kind="document",
                              label="S", text=f"rapport secret {i}") for i in range(400)]
    ws.catalog.put(admin, b"convoi", name="convoi.txt", kind="document", label="DR",
                   text="Le convoi de ravitaillement part demain à 6 h du dépôt nord.")
    assistant = Assistant(ws, embedder=HashEmbedder(), engine=EchoEngine())
    assistant.index_all(admin)

    stop = time.monotonic() + SECONDS
    errors: list[str] = []
    made: dict[str, list[str]] = {"ingest": [], "declassify": [], "assistant.ask": []}
    lock = threading.Lock()

    def run(name: str, step: Any) -> None:
        i = 0
        while time.monotonic() < stop and not errors:
            try:
                out = step(i)
            except Exception as exc:  # noqa: BLE001 - any failure is the finding
                errors.append(f"{name}: {type(exc).__name__}: {exc}")
                return
            if out is not None:
                with lock:
                    made[out[0]].extend(out[1])
            i += 1

    def ingester(tag: str) -> Any:
        folder = tmp_path / f"in-{tag}"
        folder.mkdir()

        def step(i: int) -> tuple[str, list[str]]:
            f = folder / f"{i}.txt"
            f.write_text(f"note {tag} {i}")
            from casemate.catalog.ingest import ingest

            report = ingest(ws, admin, [f], "DR")
            assert report.ok and len(report.ingested) == 1, report.summary()
            return "ingest", [v.id for v in report.ingested]

        return step

    def asker(user: Any) -> Any:
        def step(i: int) -> tuple[str, list[str]]:
            answer = assistant.ask(user, "Quand part le convoi de ravitaillement ?")
            assert format_label(answer.label) in ("NP", "DR")
            return "assistant.ask", [answer.conversation_id]

        return step

    def declassifier(part: int) -> Any:
        todo = secrets[part::2]

        def step(i: int) -> tuple[str, list[str]] | None:
            if i >= len(todo):
                time.sleep(0.01)
                return None
            v = ws.catalog.declassify(sam, todo[i].id, "DR", "released")
            return "declassify", [v.id]

        return step

    def tailer(i: int) -> None:
        entries = ws.audit.tail_for(sam, 50)
        assert all(isinstance(e.seq, int) for e in entries)

    def reader(i: int) -> None:
        page = ws.catalog.list(dana, limit=20)
        assert all(format_label(v.label) in ("NP", "DR") for v in page)

    threads = [
        threading.Thread(target=run, args=("ingest-a", ingester("a"))),
        threading.Thread(target=run, args=("ingest-b", ingester("b"))),
        threading.Thread(target=run, args=("ask-sam", asker(sam))),
        threading.Thread(target=run, args=("ask-dana", asker(dana))),
        threading.Thread(target=run, args=("declassify-0", declassifier(0))),
        threading.Thread(target=run, args=("declassify-1", declassifier(1))),
        threading.Thread(target=run, args=("tail", tailer)),
        threading.Thread(target=run, args=("read", reader)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(SECONDS + 120)
    assert not any(t.is_alive() for t in threads), "a thread is stuck"
    assert errors == []
    for action, ids in made.items():
        assert ids, f"no {action} happened in {SECONDS} s"
    ws.close()

    with Workspace.open(home) as ws2:
        result = ws2.audit.verify()
        assert result.ok, result
        entries = ws2.audit.tail(result.entries)
    assert [e.seq for e in entries] == list(range(result.entries))
    by_action: dict[str, Counter[str]] = {}
    for e in entries:
        by_action.setdefault(e.action, Counter())[e.target or ""] += 1
    for action, ids in made.items():
        counts = by_action.get(action, Counter())
        assert len(ids) == len(set(ids))
        assert all(counts[i] == 1 for i in ids), f"{action}: an entry is missing or doubled"
        assert sum(counts[i] for i in ids) == len(ids)
