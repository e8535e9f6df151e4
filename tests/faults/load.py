"""The load driver shared by tests/faults/test_load.py (short, in CI) and benchmarks/bench_load.py
(20 clients x 60 s): N client threads against a real `casemate serve` on loopback, each in a closed
loop of search (70 %), ask (20 %) and ingest (10 %).

Ingest is what the deployment does: an upload through the console's API (the same `ingest` and
after-ingest hooks as `casemate ingest`: the upload is indexed by the server's own assistant), so
searches and answers meet a catalog and an index that grow under them. Ask goes through the
server's real `openai` engine to the loopback stand-in model of upstream.py, which answers at once:
the load is about the server, not about the model (on two cores, llama.cpp would be all we measured).

Each client waits `think` seconds between its requests (0: back to back, the saturation test).
The server's CPU time is read from /proc, so figures stay meaningful on a shared machine.
"""

from __future__ import annotations

import os
import random
import statistics
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from .faults_helpers import QUESTION

QUERIES = ["carburant", "dépôt nord", "ravitaillement des véhicules", "droits des hommes", "convoi mardi",
           "logistique de la base", "égaux en droits"]
WORDS = ["convoi", "dépôt", "nord", "mardi", "carburant", "véhicule", "base", "logistique", "relève",
         "patrouille", "secteur", "munitions", "vivres", "transmissions", "piste", "hangar"]
PASSWORD = "load-test-password-1"  # the console's login (ingest is an upload)
MIX = (("search", 0.7), ("ask", 0.2), ("ingest", 0.1))
# each user asks what a document they may read answers (a question their documents do not speak of
# is "not found" without a model call: an ask would then cost no model time at all)
ASKED = {"nina": "Comment les hommes naissent-ils et demeurent-ils selon l'article 1er ?", "dora": QUESTION}
READABLE = {"nina": {"NP"}, "dora": {"NP", "DR"}}  # the labels each user's results may carry


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def quantiles(ms: list[float]) -> dict[str, float]:
    if not ms:
        return {"n": 0}
    if len(ms) == 1:
        return {"n": 1, "p50": round(ms[0], 1), "p95": round(ms[0], 1), "max": round(ms[0], 1)}
    q = statistics.quantiles(ms, n=100, method="inclusive")
    return {"n": len(ms), "p50": round(q[49], 1), "p95": round(q[94], 1), "max": round(max(ms), 1)}


@dataclass
class LoadResult:
    seconds: float
    server_cpu_s: float
    driver_cpu_s: float = 0.0  # this process: the clients and the stand-in model, on the same cores
    latencies: dict[str, list[float]] = field(default_factory=dict)
    statuses: dict[int, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)  # 5xx bodies and transport errors, first few
    leaks: list[str] = field(default_factory=list)  # results above the searcher's clearance (must stay empty)
    uploaded: list[str] = field(default_factory=list)  # the names of the notes ingested

    @property
    def five_xx(self) -> int:
        return sum(n for s, n in self.statuses.items() if s >= 500)

    def to_json(self) -> dict[str, Any]:
        total = sum(len(v) for v in self.latencies.values())
        return {"seconds": round(self.seconds, 1), "requests": total,
                "requests_per_s": round(total / self.seconds, 1) if self.seconds else 0.0,
                "server_cpu_ms_per_request": round(self.server_cpu_s * 1000 / total, 1) if total else None,
                "driver_cpu_ms_per_request": round(self.driver_cpu_s * 1000 / total, 1) if total else None,
                "statuses": {str(k): v for k, v in sorted(self.statuses.items())}, "5xx": self.five_xx,
                "label_leaks": len(self.leaks),
                **{kind: quantiles(ms) for kind, ms in sorted(self.latencies.items())},
                "errors": self.errors[:5]}


def console_session(url: str, user: str) -> tuple[httpx.Cookies, str]:
    """Sign in to the console once per user (argon2: slow on purpose); its clients share the cookie."""
    r = httpx.post(f"{url}/console/api/login", json={"username": user, "password": PASSWORD}, timeout=60)
    if r.status_code != 200:
        raise AssertionError(f"console login of {user} failed: {r.status_code} {r.text[:300]}")
    return r.cookies, str(r.json()["csrf"])


def run_load(url: str, pid: int, tokens: dict[str, str], *, clients: int, seconds: float,
             ingest: bool = True, think: float = 0.0, seed: int = 0) -> LoadResult:
    """`clients` threads for `seconds` against the server at `url` (process `pid`); users alternate
    between nina (NP) and dora (DR), whose uploads are labelled NP."""
    users = ["dora", "nina"]
    sessions = {u: console_session(url, u) for u in users} if ingest else {}
    mix = [(k, p) for k, p in MIX if ingest or k != "ingest"]
    total_p = sum(p for _, p in mix)
    lock = threading.Lock()
    result = LoadResult(0.0, 0.0, latencies={k: [] for k, _ in mix})
    crashes: list[BaseException] = []
    start = threading.Barrier(clients + 1)

    def note(kind: str, status: int, ms: float, body: str = "") -> None:
        with lock:
            result.latencies[kind].append(ms)
            result.statuses[status] = result.statuses.get(status, 0) + 1
            if status >= 500 and len(result.errors) < 20:
                result.errors.append(f"{kind} {status}: {body[:300]}")

    def client(i: int) -> None:
        rng = random.Random(seed * 1000 + i)
        user = users[i % 2]
        with httpx.Client(base_url=url, timeout=120, headers={"Authorization": f"Bearer {tokens[user]}"}) as c:
            if ingest:
                c.cookies = sessions[user][0]
            start.wait()
            while time.monotonic() < stop:
                r = rng.random() * total_p
                kind = next((k for k, p in _cumulative(mix) if r < p), mix[-1][0])
                t = time.perf_counter()
                try:
                    if kind == "search":
                        resp = c.post("/api/search", json={"query": rng.choice(QUERIES), "k": 5})
                        if resp.status_code == 200:
                            bad = [h["label"] for h in resp.json()["results"] if h["label"] not in READABLE[user]]
                            if bad:
                                with lock:
                                    result.leaks.append(f"{user} got {bad}")
                    elif kind == "ask":
                        resp = c.post("/v1/chat/completions", json={
                            "model": "casemate-assistant", "messages": [{"role": "user", "content": ASKED.get(user, QUESTION)}]})
                    else:
                        words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 40)))
                        name = f"note-{i}-{rng.getrandbits(40):010x}.txt"
                        body = f"Note {name} du client {i} : {words}.".encode()
                        resp = c.post("/console/api/upload", files={"files": (name, body, "text/plain")},
                                      data={"label": "NP"}, headers={"x-csrf-token": sessions[user][1]})
                        if resp.status_code == 200:
                            if resp.json().get("hook_errors"):
                                note(kind, 599, 0.0, f"hook errors: {resp.json()['hook_errors']}")
                                continue
                            with lock:
                                result.uploaded.append(name)
                    note(kind, resp.status_code, (time.perf_counter() - t) * 1000,
                         resp.text if resp.status_code >= 500 else "")
                except httpx.HTTPError as exc:  # a dropped connection counts as a server error
                    note(kind, 599, (time.perf_counter() - t) * 1000, repr(exc))
                if think:
                    time.sleep(rng.uniform(0.5, 1.5) * think)

    def guarded(i: int) -> None:
        try:
            client(i)
        except BaseException as exc:  # a broken driver must not pass for a quiet server
            crashes.append(exc)
            raise

    threads = [threading.Thread(target=guarded, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    cpu0, driver0 = process_cpu_s(pid), time.process_time()
    stop = time.monotonic() + seconds
    t0 = time.monotonic()
    start.wait()
    for t in threads:
        t.join()
    result.seconds = time.monotonic() - t0
    result.server_cpu_s = process_cpu_s(pid) - cpu0
    result.driver_cpu_s = time.process_time() - driver0
    if crashes:
        raise AssertionError(f"{len(crashes)} load client(s) crashed: {crashes[0]!r}")
    return result


def _cumulative(mix: list[tuple[str, float]]) -> list[tuple[str, float]]:
    out, acc = [], 0.0
    for k, p in mix:
        acc += p
        out.append((k, acc))
    return out
