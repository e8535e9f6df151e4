"""Area search: 10 quadcopters, 1 km^2 with no-go blocks; coverage and redundancy, with and without
losing 30% of the robots mid-mission.

Run: OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_pack_coverage.py
"""

from __future__ import annotations

import json

from casemate.pack.scenario import parse_scenario
from casemate.pack.sim import Simulation


def scenario(lose: bool) -> object:
    return parse_scenario({
        "name": "coverage-1km2",
        "area": {"polygon": [[0, 0], [1000, 0], [1000, 1000], [0, 1000]]},
        "terrain": {"cell": 10, "default": "land"},
        "no_go": [[[200, 300], [320, 300], [320, 520], [200, 520]],
                  [[600, 100], [700, 100], [700, 180], [600, 180]],
                  [[550, 650], [800, 650], [800, 720], [550, 720]]],
        # launched from ten points along the southern edge
        "robots": [{"type": "quadcopter", "count": 1, "start": [50 + 100 * k, 20]} for k in range(10)],
        "failures": {"lose": [{"time": 40, "robots": [1, 4, 7]}]} if lose else {},  # about halfway
        "objectives": {"search": True, "visit": False},
        "duration": 600, "dt": 0.5,
    }, "coverage-1km2")


def main() -> None:
    out = {}
    for lose in (False, True):
        sim = Simulation(scenario(lose), 0)
        t99 = None
        while sim.step_no < sim.sc.steps:
            sim.step()
            if t99 is None and sim.coverage() >= 0.99:
                t99 = sim.t
        m = sim.metrics()
        out["lose_30pct" if lose else "all_robots"] = {"coverage": m["coverage"], "redundancy": m["redundancy"],
                                                       "time_to_99pct_s": t99, "alive_at_end": m["alive_at_end"],
                                                       "collisions": m["collisions"], "wall_s": m["wall_s"]}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
