"""The real server on loopback, driven with the official `openai` client and httpx."""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest
from assistant_corpus import CANARY_TOKENS


def client(live: dict[str, Any], user: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=live["url"] + "/v1", api_key=live["tokens"][user], max_retries=0)


def test_models_and_chat_with_openai_client(live_server: dict[str, Any]) -> None:
    c = client(live_server, "sam")
    assert [m.id for m in c.models.list().data] == ["casemate-assistant"]
    r = c.chat.completions.create(model="casemate-assistant", max_tokens=24, messages=[
        {"role": "user", "content": "Quand a lieu le débarquement de l'opération TEMPETE ?"}])
    extra = r.model_extra or {}
    assert r.choices[0].message.content
    assert extra["label"] == "S" and extra["conversation_id"]
    assert any(cit["version_id"] == live_server["ids"]["tempete"] for cit in extra["citations"])
    assert 0 < r.usage.completion_tokens <= 24 and r.usage.prompt_tokens > 0  # llama.cpp's own counts
    # a follow-up names the previous answer's conversation: linked to it, label kept at least S
    r2 = c.chat.completions.create(model="casemate-assistant", max_tokens=8, messages=[
        {"role": "user", "content": "Quand a lieu le débarquement de l'opération TEMPETE ?"},
        {"role": "assistant", "content": r.choices[0].message.content or ""},
        {"role": "user", "content": "Les hommes naissent-ils libres et égaux en droits ?"}],
        extra_body={"conversation_id": extra["conversation_id"]})
    extra2 = r2.model_extra or {}
    ws = live_server["ws"]
    conv = ws.catalog.get(ws.acting_user("sam"), extra2["conversation_id"])
    assert extra["conversation_id"] in conv.parents and extra2["label"] == "S" and str(conv.label) == "S"
    # someone who cannot read that conversation gets the answer an absent one gets
    with pytest.raises(openai.NotFoundError, match="no such item"):
        client(live_server, "nina").chat.completions.create(
            model="casemate-assistant", max_tokens=4, messages=[{"role": "user", "content": "Et ensuite ?"}],
            extra_body={"conversation_id": extra["conversation_id"]})


def test_streaming_carries_label_and_citations(live_server: dict[str, Any]) -> None:
    c = client(live_server, "dora")
    chunks = list(c.chat.completions.create(model="casemate-assistant", max_tokens=16, stream=True, messages=[
        {"role": "user", "content": "Le ravitaillement en carburant au dépôt nord ?"}]))
    first, last = chunks[0].model_extra or {}, chunks[-1].model_extra or {}
    assert first["label"] == "DR" and first["citations"]
    assert last["conversation_id"] and chunks[-1].choices[0].finish_reason == "stop"
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks)
    blob = json.dumps([ch.model_dump() for ch in chunks], ensure_ascii=False)
    for token in CANARY_TOKENS.values():
        assert token not in blob
    assert text.strip()


def test_search_is_filtered_and_needs_auth(live_server: dict[str, Any]) -> None:
    url = live_server["url"]
    assert httpx.post(url + "/api/search", json={"query": "opération TEMPETE"}).status_code == 401
    assert httpx.post(url + "/api/search", json={"query": "x"},
                      headers={"Authorization": "Bearer nope"}).status_code == 401
    r = httpx.post(url + "/api/search", json={"query": "opération TEMPETE CANARY", "k": 20},
                   headers={"Authorization": "Bearer " + live_server["tokens"]["nina"]})
    assert r.status_code == 200
    body = r.text
    for name, token in CANARY_TOKENS.items():
        assert token not in body and live_server["ids"][name] not in body
    assert all(h["label"] == "NP" for h in r.json()["results"])


def test_login_with_password_then_chat(live_server: dict[str, Any]) -> None:
    url = live_server["url"]
    bad = httpx.post(url + "/api/login", json={"username": "nina", "password": "wrong"})
    assert bad.status_code == 401 and "wrong user name or password" in bad.json()["error"]["message"]
    ok = httpx.post(url + "/api/login", json={"username": "nina", "password": "pw-nina-correct-horse"})
    assert ok.status_code == 200
    me = httpx.get(url + "/api/me", headers={"Authorization": "Bearer " + ok.json()["token"]})
    assert me.json()["clearance"] == "NP"


def test_bad_input_gets_clear_4xx(live_server: dict[str, Any]) -> None:
    url, h = live_server["url"], {"Authorization": "Bearer " + live_server["tokens"]["nina"]}
    r = httpx.post(url + "/v1/chat/completions", json={"model": "casemate-assistant", "messages": []}, headers=h)
    assert r.status_code == 400 and "messages" in r.json()["error"]["message"]
    r = httpx.post(url + "/v1/chat/completions", content=b"{not json", headers={**h, "Content-Type":
                                                                                "application/json"})
    assert r.status_code == 400
    r = httpx.post(url + "/api/search", json={"query": "x" * 100_000}, headers=h)
    assert r.status_code == 413
    r = httpx.post(url + "/api/search", json={"query": "x", "k": 500}, headers=h)
    assert r.status_code == 400 and "k" in r.json()["error"]["message"]
    with pytest.raises(openai.NotFoundError):
        client(live_server, "nina").chat.completions.create(model="gpt-4", messages=[
            {"role": "user", "content": "hi"}])


def test_login_is_rate_limited(live_server: dict[str, Any]) -> None:
    url = live_server["url"]
    codes = [httpx.post(url + "/api/login", json={"username": "sam", "password": "bad"}).status_code
             for _ in range(7)]
    assert codes[-1] == 429 and 401 in codes


def test_docs_and_page_are_offline(live_server: dict[str, Any]) -> None:
    url = live_server["url"]
    spec = httpx.get(url + "/openapi.json").json()
    assert "/v1/chat/completions" in spec["paths"] and "/api/search" in spec["paths"]
    for path in ("/", "/docs", "/static/app.js", "/static/docs.js", "/static/style.css"):
        r = httpx.get(url + path)
        assert r.status_code == 200
        assert "https://" not in r.text and "http://" not in r.text and "//cdn" not in r.text
        assert "default-src 'self'" in r.headers["content-security-policy"]
