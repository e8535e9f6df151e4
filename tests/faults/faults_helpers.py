"""Shared by the fault tests: a served workspace, `casemate serve` as a child process, and the
storage invariants every fault must leave intact."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from casemate.workspace import Workspace

DOCS = [
    ("logistique", "Le ravitaillement en carburant des véhicules de la base se fait chaque mardi au dépôt nord.",
     "DR"),
    ("ddhc-art1", "Article 1er\nLes hommes naissent et demeurent libres et égaux en droits.", "NP"),
    ("tempete", "Opération TEMPETE : CANARYS7781 le convoi part mardi du dépôt nord.", "S"),
]
QUESTION = "Quand se fait le ravitaillement en carburant des véhicules ?"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def served_workspace(home: Path, upstream_url: str, *, password: str | None = None, embedder: str | None = None,
                     **config: Any) -> dict[str, str]:
    """A workspace with users, three labelled documents indexed (real e5 embedder) and the
    assistant's engine pointed at `upstream_url`; returns API tokens by user name. `password`:
    nina's and dora's console password (they sign in there to upload). `embedder`: the workspace's
    assistant.embedder (the index is built with it)."""
    from casemate.assistant.embedder import default_embedder
    from casemate.assistant.pipeline import Assistant

    ws = Workspace.init(home)
    try:
        admin = ws.acting_user("admin")
        ws.users.add(admin, "nina", clearance="NP", roles=["analyst"])
        ws.users.add(admin, "dora", clearance="DR", roles=["analyst"])
        for name in ("nina", "dora") if password else ():
            ws.users.set_password(admin, name, password)
        for name, text, label in DOCS:
            ws.catalog.put(admin, text.encode(), name=name, kind="document", label=label, text=text)
        Assistant(ws, embedder=default_embedder(kind=embedder) if embedder else None).index_all(admin)
        tokens = {n: ws.tokens.create(admin, for_user=n) for n in ("nina", "dora", "admin")}
    finally:
        ws.close()
    path = home / "config.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    data.setdefault("assistant", {})["engine"] = {"type": "openai", "base_url": upstream_url, "model": "upstream"}
    if embedder:
        data["assistant"]["embedder"] = embedder
    for key, value in config.items():
        data[key] = value
    path.write_text(json.dumps(data))
    return tokens


def start_server(home: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    """`casemate serve` on a loopback port; returns once /api/health answers (or fails the test)."""
    out = log.open("ab")
    env = dict(os.environ, PYTHONFAULTHANDLER="1")  # SIGABRT dumps its threads' stacks into the log
    proc = subprocess.Popen([sys.executable, "-m", "casemate.cli", "--home", str(home), "serve", "--port", str(port)],
                            stdout=out, stderr=out, env=env)
    out.close()
    deadline = time.monotonic() + 180  # a loaded machine starts it slowly
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"casemate serve exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=5).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    proc.send_signal(signal.SIGABRT)
    proc.wait(30)
    raise AssertionError(f"casemate serve did not answer within 180 s: {log.read_text()[-6000:]}")


def blob_ok(home: Path, sha: str) -> bool:
    blob = home / "blobs" / sha[:2] / sha
    return blob.is_file() and hashlib.sha256(blob.read_bytes()).hexdigest() == sha


def check_storage(home: Path) -> dict[str, Any]:
    """The invariants: every version's blob is there with its hash; every conversation is whole
    (parses, ends with the assistant's answer, has its text and exactly one assistant.ask entry),
    no assistant.ask entry names a missing conversation, and the audit log verifies. Returns
    the conversations by id and the audit length."""
    with Workspace.open(home) as ws:
        result = ws.audit.verify()
        assert result.ok, result
        with ws.engine.connect() as conn:
            rows = conn.exec_driver_sql(
                "SELECT v.public_id, v.sha256, v.kind, (SELECT COUNT(*) FROM texts t WHERE t.version_id = v.id) "
                "FROM versions v").fetchall()
            lines = [json.loads(line) for (line,) in conn.exec_driver_sql("SELECT line FROM audit ORDER BY seq")]
    conversations: dict[str, dict[str, Any]] = {}
    for vid, sha, kind, n_text in rows:
        assert blob_ok(home, sha), f"version {vid} ({kind}) points to a missing or wrong blob"
        if kind != "conversation":
            continue
        record = json.loads((home / "blobs" / sha[:2] / sha).read_bytes())
        assert record["format"] == "casemate-conversation/1"
        messages = record["messages"]
        assert messages[-2]["role"] == "user" and messages[-1]["role"] == "assistant", f"{vid} is half a turn"
        assert messages[-1]["content"].strip(), f"{vid} stored an empty answer"
        assert record["answer"]["answer"] == messages[-1]["content"]
        assert n_text == 1, f"conversation {vid} has no text row"
        conversations[vid] = record
    asks = [e["target"] for e in lines if e["action"] == "assistant.ask"]
    assert sorted(asks) == sorted(conversations), "assistant.ask audit entries and stored conversations disagree"
    return {"conversations": conversations, "audit": len(lines), "versions": len(rows)}
