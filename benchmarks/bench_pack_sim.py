"""Simulation throughput: steps per second for 1,000 and 10,000 mixed robots with sensing, lossy
bursty comms (with CBBA over it), collision avoidance and Lloyd surveillance.

Run: OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_pack_sim.py [--steps 200] [--runs 1]
     [--timestamps auto|full|local] [--only 1000|10000]
(auto: CBBA keeps local timestamps from 4,096 robots, the full N x N table below; full/local force one.)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import numpy as np

from casemate.pack.allocation import CBBA
from casemate.pack.scenario import load_scenario, parse_scenario
from casemate.pack.sim import Simulation


def scaled(n_factor: int) -> object:
    """The coastal scenario with every robot group (and the area) scaled by n_factor."""
    sc = load_scenario("coastal-surveillance")
    raw = dict(sc.raw)
    if n_factor == 1:
        return sc
    k = float(np.sqrt(n_factor))
    def scale_poly(p):
        return [[x * k, y * k] for x, y in p]
    raw["area"] = {"crs": "local", "polygon": scale_poly(raw["area"]["polygon"])}
    t = dict(raw["terrain"])
    t["cell"] = t["cell"] * k
    t["land"] = [scale_poly(p) for p in t.get("land", [])]
    t["obstacles"] = [scale_poly(p) for p in t.get("obstacles", [])]
    raw["terrain"] = t
    raw["no_go"] = [scale_poly(p) for p in raw.get("no_go", [])]
    raw["robots"] = [{**g, "count": g["count"] * n_factor, "start": [g["start"][0] * k, g["start"][1] * k]} for g in raw["robots"]]
    raw["targets"] = [{**tg, "position": [tg["position"][0] * k, tg["position"][1] * k]} for tg in raw["targets"]]
    return parse_scenario(raw, f"coastal-x{n_factor}")


def bench(n_factor: int, steps: int, warm: int) -> dict:
    sc = scaled(n_factor)
    sim = Simulation(sc, 0, record_every=10**9, track_redundancy=False)
    for _ in range(warm):
        sim.step()
    times, cpu = [], []
    main0 = time.thread_time()
    for _ in range(steps):
        t0, c0 = time.perf_counter(), time.process_time()
        sim.step()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    main_cpu = time.thread_time() - main0
    med = statistics.median(times)
    m = sim.metrics()
    return {
        "robots": len(sim.fleet),
        "steps_timed": steps,
        "median_step_ms": round(1000 * med, 2),
        "steps_per_s_median": round(1 / med, 1),
        "steps_per_s_mean": round(steps / sum(times), 1),
        # CPU time of the process, both threads (the allocation round runs on a worker thread beside
        # the motion): above the wall time where they overlapped, below it where other work held a core
        "cpu_ms_per_step": round(1000 * sum(cpu) / steps, 2),
        # of which the main thread's (the rest: the worker thread's allocation rounds and radio); on two
        # cores a step takes at least the larger of the two
        "main_thread_cpu_ms_per_step": round(1000 * main_cpu / steps, 2),
        "wall_ms_per_step": round(1000 * sum(times) / steps, 2),
        "messages_sent": m["messages_sent"],
        "messages_lost": m["messages_lost"],
        "collisions": m["collisions"],
        "min_separation_m": m["min_separation_m"],
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--big-steps", type=int, default=40)
    ap.add_argument("--runs", type=int, default=1, help="repeat each size and report the median")
    ap.add_argument("--timestamps", choices=["auto", "full", "local"], default="auto")
    ap.add_argument("--only", choices=["1000", "10000"], default=None)
    a = ap.parse_args()
    CBBA.local_from = {"auto": getattr(CBBA, "local_from", 4096), "full": 1 << 62, "local": 0}[a.timestamps]
    out = {"machine": platform.processor() or platform.machine(), "python": platform.python_version(),
           "timestamps": a.timestamps, "load_before": round(os.getloadavg()[0], 2)}
    runs1 = [bench(1, a.steps, 20) for _ in range(a.runs)] if a.only != "10000" else []
    runs10 = [bench(10, a.big_steps, 5) for _ in range(a.runs)] if a.only != "1000" else []
    for key, runs in (("1000", runs1), ("10000", runs10)):
        if not runs:
            continue
        out[key] = runs[0] if a.runs == 1 else {
            "runs": runs,
            "steps_per_s_mean_median": statistics.median(r["steps_per_s_mean"] for r in runs),
            "cpu_ms_per_step_median": statistics.median(r["cpu_ms_per_step"] for r in runs),
        }
    out["load_after"] = round(os.getloadavg()[0], 2)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
