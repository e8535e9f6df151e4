"""kill -9 of `casemate serve` while answers stream, at random moments: no half conversation is
stored, the audit log verifies, and the server restarts and serves.

The server is the shipped one (`casemate serve`, real e5 embedder, its `openai` engine); the model
behind it is a slow loopback stand-in (upstream.py), since the fault is about storage atomicity.
Each server life gets three staggered questions and one kill at a random moment, so the kills meet
answers at every stage: the model streaming, the answer's check, its storage and audit, the reply.
"""

from __future__ import annotations

import json
import os
import random
import signal
import threading
import time

import httpx
import pytest

from .faults_helpers import QUESTION, check_storage, free_port, served_workspace, start_server
from .upstream import upstream

# 20 in the full run (CASEMATE_FAULT_KILLS=20, docs/benchmarks.md); each restart of the server
# costs seconds of CPU, so CI runs fewer by default
KILLS = int(os.environ.get("CASEMATE_FAULT_KILLS", "4"))
CLIENTS = 3
STAGGER = 0.12  # s between the clients' questions
WINDOW = 1.6  # s after the last question (an answer takes ~1 s here under load)


def _ask(url: str, token: str, got: dict[str, object]) -> None:
    """Stream one answer; record the conversation id if the final chunk arrived."""
    body = {"model": "casemate-assistant", "stream": True, "messages": [{"role": "user", "content": QUESTION}]}
    try:
        with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=30,
                          headers={"Authorization": f"Bearer {token}"}) as resp:
            got["status"] = resp.status_code
            for line in resp.iter_lines():
                if line.startswith("data: {"):
                    obj = json.loads(line[6:])
                    if obj.get("conversation_id"):
                        got["conversation_id"] = obj["conversation_id"]
    except httpx.HTTPError as exc:
        got["error"] = repr(exc)


@pytest.mark.slow
def test_kill_dash_nine_while_answers_stream(tmp_path) -> None:
    rng = random.Random(4321)
    home = tmp_path / "ws"
    log = tmp_path / "serve.log"
    with upstream(delay=0.015) as up:
        tokens = served_workspace(home, up.url)
        before = check_storage(home)
        confirmed: list[str] = []  # answers whose last chunk reached the client: they must be kept
        stored_by_killed = 0
        for run in range(KILLS):
            port = free_port()
            proc = start_server(home, port, log)
            up.started.clear()
            results: list[dict[str, object]] = []
            clients = []
            for i in range(CLIENTS):  # staggered: one kill meets answers at different stages
                got: dict[str, object] = {}
                results.append(got)
                clients.append(threading.Thread(target=_ask, args=(f"http://127.0.0.1:{port}", tokens["dora"], got)))
                clients[-1].start()
                if i == 0:
                    assert up.started.wait(30), f"run {run}: the server never asked the model: {log.read_text()[-2000:]}"
                time.sleep(STAGGER)
            time.sleep(rng.uniform(0.0, WINDOW))
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            for c in clients:
                c.join(30)
            confirmed += [str(g["conversation_id"]) for g in results if g.get("conversation_id")]
            state = check_storage(home)
            missing = set(confirmed) - set(state["conversations"])
            assert not missing, f"run {run}: answers the client received were lost: {missing}"
            stored_by_killed = len(state["conversations"])
        # the workspace still serves: a whole answer, stored and audited
        port = free_port()
        proc = start_server(home, port, log)
        try:
            r = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", timeout=60,
                           headers={"Authorization": f"Bearer {tokens['dora']}"},
                           json={"model": "casemate-assistant", "messages": [{"role": "user", "content": QUESTION}]})
            assert r.status_code == 200, r.text
            cid = r.json()["conversation_id"]
            s = httpx.post(f"http://127.0.0.1:{port}/api/search", timeout=30, json={"query": "carburant"},
                           headers={"Authorization": f"Bearer {tokens['dora']}"})
            assert s.status_code == 200 and s.json()["results"], s.text
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
        after = check_storage(home)
        assert cid in after["conversations"]
        assert after["versions"] > before["versions"]
        print(f"\n{KILLS} kills, {KILLS * CLIENTS} answers streaming: {len(confirmed)} delivered before the kill, "
              f"{stored_by_killed} stored by the killed servers")
