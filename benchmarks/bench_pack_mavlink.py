"""MAVLink bridge overhead: a 1,000-robot step with and without 250 robots exposed at 1 Hz (wall clock)
to a ground station on loopback UDP (a separate process that reads and counts the messages).

Steps with and without the bridge alternate in blocks, so load changes hit both alike; medians and
means of the wall time, and the process's CPU time per step (both threads of the simulation and the
bridge; the ground station's process not counted): the CPU ratio is the figure that holds on a loaded
machine. The ground station is another process (as QGroundControl would be), so its reading costs the
simulation nothing but a share of the machine.
The bridge's own CPU (the calling thread's, inside tick()) per bridged step, against a plain step's
CPU, is the headline overhead. Then the cost of one telemetry batch alone (the vehicles due in 100 ms), for both encoders, alternating.
Run: OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_pack_mavlink.py [--steps 600] [--block 50]
     [--encoder records|batch]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import socket
import statistics
import time

from casemate.pack.mavlink import MavlinkBridge
from casemate.pack.scenario import load_scenario
from casemate.pack.sim import Simulation


def ground_station(port_q: mp.Queue, stop: mp.Event, count_q: mp.Queue) -> None:
    from pymavlink.dialects.v20 import common as mav

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.2)
    port_q.put(sock.getsockname()[1])
    parser = mav.MAVLink(None)
    n, systems = 0, set()
    while not stop.is_set():
        try:
            data, addr = sock.recvfrom(65536)
        except TimeoutError:
            continue
        for m in parser.parse_buffer(data) or []:
            n += 1
            systems.add((addr, m.get_srcSystem()))
    count_q.put((n, len(systems)))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--block", type=int, default=50)
    ap.add_argument("--exposed", type=int, default=250)
    ap.add_argument("--rate", type=float, default=1.0)
    ap.add_argument("--encoder", choices=["records", "batch"], default="records",
                    help="records: one record per vehicle (default); batch: encode_batch per message type (before)")
    a = ap.parse_args()
    load0 = round(os.getloadavg()[0], 2)
    port_q, count_q, stop = mp.Queue(), mp.Queue(), mp.Event()
    gcs = mp.Process(target=ground_station, args=(port_q, stop, count_q), daemon=True)
    gcs.start()
    port = port_q.get(timeout=10)
    sim = Simulation(load_scenario("coastal-surveillance"), 0, record_every=10**9, track_redundancy=False)
    for _ in range(20):
        sim.step()
    bridge = MavlinkBridge(sim, range(a.exposed), gcs=("127.0.0.1", port), rate_hz=a.rate, encoder=a.encoder)
    plain, bridged = [], []
    cpu = {False: 0.0, True: 0.0}  # process CPU seconds, without and with the bridge
    tick_cpu = 0.0  # CPU seconds of the calling thread inside bridge.tick(): the bridge's own work
    t_start = time.monotonic()
    for s in range(a.steps):
        on = (s // a.block) % 2 == 1
        if on and s % a.block == 0:
            bridge.resume()  # as if it had been running all along: no burst of overdue reports
        t0, c0 = time.perf_counter(), time.process_time()
        sim.step()
        if on:
            c1 = time.thread_time()
            bridge.tick()
            tick_cpu += time.thread_time() - c1
        (bridged if on else plain).append(time.perf_counter() - t0)
        cpu[on] += time.process_time() - c0
    wall = time.monotonic() - t_start
    sim.close()
    time.sleep(0.5)
    stop.set()
    n_msgs, n_sys = count_q.get(timeout=10)
    gcs.join(5)
    # one batch alone: the vehicles due in 100 ms at this rate, both encoders alternating
    due = max(1, int(round(a.exposed * a.rate * bridge.batch_s)))
    enc_ms: dict[str, list[float]] = {"records": [], "batch": []}
    for _ in range(400):
        for enc in ("records", "batch"):
            bridge.encoder = enc
            bridge.next_due[:] = float("inf")
            bridge.next_due[:due] = -1.0
            bridge._last_batch = -float("inf")
            t0 = time.perf_counter()
            bridge._telemetry(time.monotonic())  # to a closed port: refused, ignored
            enc_ms[enc].append(1000 * (time.perf_counter() - t0))
    bridge.close()
    mp_, mb_ = statistics.median(plain), statistics.median(bridged)
    cp_, cb_ = 1000 * cpu[False] / len(plain), 1000 * cpu[True] / len(bridged)
    print(json.dumps({
        "machine": platform.processor() or platform.machine(), "python": platform.python_version(),
        "load_before": load0, "load": os.getloadavg()[0], "robots": len(sim.fleet), "exposed": a.exposed, "rate_hz": a.rate,
        "steps_each": len(plain), "median_step_ms_plain": round(1000 * mp_, 3),
        "median_step_ms_bridged": round(1000 * mb_, 3), "overhead_median_pct": round(100 * (mb_ / mp_ - 1), 2),
        "mean_step_ms_plain": round(1000 * statistics.fmean(plain), 3),
        "mean_step_ms_bridged": round(1000 * statistics.fmean(bridged), 3),
        "overhead_mean_pct": round(100 * (statistics.fmean(bridged) / statistics.fmean(plain) - 1), 2),
        "cpu_ms_per_step_plain": round(cp_, 3), "cpu_ms_per_step_bridged": round(cb_, 3),
        "overhead_cpu_pct": round(100 * (cb_ / cp_ - 1), 2),
        # the bridge's own CPU per step against a plain step's CPU: the overhead without the step-to-step
        # noise of the two blocks' simulation work (headline)
        "bridge_cpu_ms_per_step": round(1000 * tick_cpu / len(bridged), 4),
        "bridge_cpu_pct_of_plain_step": round(100 * 1000 * tick_cpu / len(bridged) / cp_, 2),
        "bridge_ms_per_tick": round(1000 * bridge.stats.wall_s / max(bridge.stats.ticks, 1), 4),
        "bridge_share_of_bridged_steps_pct": round(100 * bridge.stats.wall_s / sum(bridged), 2),
        "messages_sent": bridge.stats.sent, "messages_received_by_gcs": n_msgs, "vehicles_seen_by_gcs": n_sys,
        "wall_s": round(wall, 1), "encoder": a.encoder,
        "one_batch_vehicles": due, **{f"one_batch_ms_median_{k}": round(statistics.median(v), 4) for k, v in enc_ms.items()},
    }, indent=1))


if __name__ == "__main__":
    main()
