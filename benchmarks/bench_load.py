"""Load on loopback: N clients x S seconds of mixed search (70 %), ask (20 %) and ingest (10 %)
against the real `casemate serve` (real e5 embedder; the model is the loopback stand-in of
tests/faults/upstream.py, answering at once: 20 clients on a 2-core machine would otherwise only
measure llama.cpp). Ingest goes through `casemate ingest` beside the server (the server has no
ingest endpoint outside the console), into the same workspace, so searches and answers meet a
catalog and an index that grow under them.

    .venv/bin/python -m benchmarks.bench_load [--clients 20] [--seconds 60]

Prints the request counts, the 5xx count (must be 0) and search p50/p95 (target p95 <= 100 ms).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from faults.faults_helpers import QUESTION, free_port, served_workspace, start_server  # noqa: E402
from faults.upstream import upstream  # noqa: E402

QUERIES = ["carburant", "dépôt nord", "ravitaillement des véhicules", "droits des hommes", "convoi mardi",
           "logistique de la base", "égaux en droits"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--no-ingest", action="store_true", help="search and ask only (isolates the ingest's cost)")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="casemate-load-"))
    home = root / "ws"
    with upstream(delay=0.0) as up:
        tokens = served_workspace(home, up.url, server={"rate_per_minute": 100_000})
        port = free_port()
        proc = start_server(home, port, root / "serve.log")
        url = f"http://127.0.0.1:{port}"
        stop = time.monotonic() + args.seconds
        lock = threading.Lock()
        search_ms: list[float] = []
        counts: dict[str, int] = {}
        statuses: dict[int, int] = {}

        def note(kind: str, status: int) -> None:
            with lock:
                counts[kind] = counts.get(kind, 0) + 1
                statuses[status] = statuses.get(status, 0) + 1

        def client(i: int) -> None:
            rng = random.Random(i)
            h = {"Authorization": f"Bearer {tokens['dora' if i % 2 else 'nina']}"}
            with httpx.Client(base_url=url, headers=h, timeout=120) as c:
                while time.monotonic() < stop:
                    r = rng.random()
                    if r < 0.7:
                        t = time.perf_counter()
                        resp = c.post("/api/search", json={"query": rng.choice(QUERIES), "k": 5})
                        ms = (time.perf_counter() - t) * 1000
                        with lock:
                            search_ms.append(ms)
                        note("search", resp.status_code)
                    elif r < 0.9 or args.no_ingest:
                        resp = c.post("/v1/chat/completions", json={
                            "model": "casemate-assistant", "messages": [{"role": "user", "content": QUESTION}]})
                        note("ask", resp.status_code)
                    else:
                        src = root / f"in-{i}-{rng.getrandbits(32)}"
                        src.mkdir()
                        (src / "note.txt").write_text(f"Note {src.name} : le convoi {i} part du dépôt nord mardi.")
                        out = subprocess.run([sys.executable, "-m", "casemate.cli", "--home", str(home), "ingest",
                                              str(src), "--label", "NP"], capture_output=True, text=True)
                        note("ingest", 200 if out.returncode == 0 else 500)

        threads = [threading.Thread(target=client, args=(i,)) for i in range(args.clients)]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.monotonic() - t0
        proc.terminate()
        proc.wait(30)
    q = statistics.quantiles(search_ms, n=100) if len(search_ms) > 1 else [0.0] * 99
    five = sum(n for s, n in statuses.items() if s >= 500)
    print(json.dumps({"clients": args.clients, "seconds": round(wall, 1), "requests": counts,
                      "statuses": statuses, "5xx": five, "search_p50_ms": round(q[49], 1),
                      "search_p95_ms": round(q[94], 1)}))


if __name__ == "__main__":
    main()
