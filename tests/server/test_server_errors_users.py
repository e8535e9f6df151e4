"""Errors map to their class's HTTP status; several users at once each get only what they may read."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
from assistant_corpus import CANARY_TOKENS
from live import serving

from casemate.errors import IntegrityError, PermissionDenied
from casemate.security.labels import parse_label
from casemate.security.policy import can_read


class _Refusing:
    """An assistant whose search fails with a given error (the server's mapping is under test)."""

    def __init__(self, real: Any, error: Exception) -> None:
        self._real, self._error = real, error

    def search(self, *_: Any, **__: Any) -> Any:
        raise self._error


def test_errors_map_to_their_http_status(live_server: dict[str, Any]) -> None:
    from casemate.server.app import create_app

    h = {"Authorization": "Bearer " + live_server["tokens"]["nina"]}
    cases = [(PermissionDenied("only an officer may do that"), 403, "permission_error"),
             (IntegrityError("the audit chain is broken"), 500, "server_error")]
    for error, status, kind in cases:
        app = create_app(live_server["ws"], _Refusing(live_server["assistant"], error))  # type: ignore[arg-type]
        with serving(app) as url:
            r = httpx.post(url + "/api/search", json={"query": "droits"}, headers=h)
        assert r.status_code == status and r.json()["error"]["type"] == kind
        assert r.json()["error"]["message"] == error.message  # type: ignore[attr-defined]
    # hidden stays "not found", word for word like an absent item
    url = live_server["url"]
    sam = {"Authorization": "Bearer " + live_server["tokens"]["sam"]}
    body = {"model": "casemate-assistant", "messages": [{"role": "user", "content": "opération TEMPETE ?"}]}
    secret_conv = httpx.post(url + "/v1/chat/completions", json=body, headers=sam, timeout=60).json()
    assert secret_conv["label"] == "S"
    hidden = httpx.post(url + "/v1/chat/completions", headers=h, timeout=60,
                        json={**body, "conversation_id": secret_conv["conversation_id"]})
    absent = httpx.post(url + "/v1/chat/completions", headers=h, timeout=60,
                        json={**body, "conversation_id": "doesnotexist"})
    assert hidden.status_code == absent.status_code == 404
    assert hidden.json()["error"]["message"].replace(secret_conv["conversation_id"], "X") == \
        absent.json()["error"]["message"].replace("doesnotexist", "X")


QUESTIONS = ["Quand a lieu le débarquement de l'opération TEMPETE ?", "Le convoi ALPHA part-il du dépôt nord ?",
             "Le ravitaillement en carburant au dépôt nord ?", "Les droits des citoyens et la loi ?"]


def test_four_users_at_once_each_within_their_clearance(live_server: dict[str, Any]) -> None:
    """nina (NP), dora (DR), sam (S) and alice (S//ALPHA) ask together, streamed and not, 24 times."""
    url, ws = live_server["url"], live_server["ws"]
    users = ["nina", "dora", "sam", "alice"]
    canary_label = {"tempete": "S", "alpha": "S//ALPHA", "ts": "TS"}

    def ask(job: tuple[str, str, bool]) -> tuple[str, int, str]:
        user, question, stream = job
        r = httpx.post(url + "/v1/chat/completions", timeout=120,
                       headers={"Authorization": "Bearer " + live_server["tokens"][user]},
                       json={"model": "casemate-assistant", "stream": stream,
                             "messages": [{"role": "user", "content": question}]})
        return user, r.status_code, r.text

    jobs = [(u, q, i % 2 == 0) for i, (u, q) in enumerate((u, q) for q in QUESTIONS for u in users)] * 2
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(ask, jobs))
    assert len(results) == 32
    for user, status, text in results:
        assert status == 200, text
        clearance = ws.acting_user(user)
        for name, token in CANARY_TOKENS.items():
            if not can_read(clearance, parse_label(canary_label[name])):
                assert token not in text and live_server["ids"][name] not in text
        for line in text.splitlines():
            obj = json.loads(line[5:]) if line.startswith("data: {") else json.loads(text) if "{" == text[:1] else None
            for c in (obj or {}).get("citations", []):
                assert can_read(clearance, parse_label(c["label"]))
    # the users who may read a canary did get it: the test can fail the other way too
    sam = [t for u, _, t in results if u == "sam" and "TEMPETE" in t]
    assert any(CANARY_TOKENS["tempete"] in t for t in sam)
