"""Collision avoidance: circle swaps (every robot flies to the antipodal point).

Run: OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_pack_avoid.py
"""

from __future__ import annotations

import json
import time

from casemate.pack.sim import circle_swap


def main() -> None:
    out = []
    for n in (10, 100, 1000):
        for method in ("sampling", "orca"):
            t0 = time.perf_counter()
            r = circle_swap(n, method=method, max_factor=3.0)
            r["method"] = method
            r["makespan_ratio"] = None if r["makespan_s"] is None else round(r["makespan_s"] / r["straight_line_s"], 2)
            r["wall_s"] = round(time.perf_counter() - t0, 1)
            out.append(r)
            print(json.dumps(r), flush=True)


if __name__ == "__main__":
    main()
