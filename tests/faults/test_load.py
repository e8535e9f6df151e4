"""Load on loopback, short (CI): 8 clients x 8 s, back to back, of search, ask and upload against
the real `casemate serve` (tests/faults/load.py; the 20 x 60 s figures are benchmarks/bench_load.py's,
in docs/benchmarks.md). No 5xx, no result above its reader's clearance, every upload searchable
at once, and searches isolated from answers: the stand-in model takes ~0.3 s per answer here, so
a lock held across a model call (or searches queued behind answers) would push the search p95
past the ask p50. The absolute bound is loose on purpose: back to back, latency is queueing
(clients / throughput), and a loaded CI machine has less throughput (docs/benchmarks.md).
"""

from __future__ import annotations

import os

import httpx
import pytest

from .faults_helpers import free_port, served_workspace, start_server
from .load import PASSWORD, run_load
from .upstream import upstream

CLIENTS = int(os.environ.get("CASEMATE_LOAD_CLIENTS", "8"))
SECONDS = float(os.environ.get("CASEMATE_LOAD_SECONDS", "8"))
WORD_DELAY = 0.015  # s between the stand-in model's words (~20 words an answer)
SEARCH_P95_MS = 2000.0


@pytest.mark.slow  # ~15 s: a server start and 8 s of load (still part of CI)
def test_mixed_load_no_5xx_and_quick_searches(tmp_path) -> None:
    home = tmp_path / "ws"
    with upstream(delay=WORD_DELAY) as up:
        tokens = served_workspace(home, up.url, password=PASSWORD, server={"rate_per_minute": 100_000})
        proc = start_server(home, port := free_port(), tmp_path / "serve.log")
        url = f"http://127.0.0.1:{port}"
        try:
            result = run_load(url, proc.pid, tokens, clients=CLIENTS, seconds=SECONDS)
            summary = result.to_json()
            # every note uploaded under load is found at once by a search for its own name
            with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {tokens['nina']}"}) as c:
                for name in result.uploaded[:3]:
                    hits = c.post("/api/search", json={"query": name, "k": 5}).json()["results"]
                    assert any(name in h["text"] for h in hits), (name, hits)
        finally:
            proc.terminate()
            proc.wait(30)
    print("load:", summary)  # shown with -s or on failure
    assert result.five_xx == 0, summary
    assert not result.leaks, result.leaks
    assert summary["search"]["n"] >= CLIENTS and summary["ask"]["n"] >= 1 and len(result.uploaded) >= 1, summary
    assert summary["search"]["p95"] < summary["ask"]["p50"], f"searches wait behind answers: {summary}"
    assert summary["search"]["p95"] <= SEARCH_P95_MS, summary
