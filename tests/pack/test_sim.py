"""The simulator: determinism, domains, separation, duplicates across a partition, coverage."""

from __future__ import annotations

import numpy as np
import pytest

from casemate.pack.scenario import parse_scenario
from casemate.pack.sim import Simulation, circle_swap
from casemate.pack.world import DOMAINS


def test_same_seed_same_run_bit_for_bit(harbour: dict) -> None:
    harbour["duration"] = 60
    sc = parse_scenario(harbour, "harbour.yaml")
    a, b, c = Simulation(sc, 7), Simulation(sc, 7), Simulation(sc, 8)
    ra, rb, _ = a.run(), b.run(), c.run()
    assert a.fleet.pos.tobytes() == b.fleet.pos.tobytes()
    assert ra.frames == rb.frames
    for k in ("coverage", "messages_sent", "messages_lost", "targets", "min_separation_m"):
        assert ra.metrics[k] == rb.metrics[k]
    assert a.fleet.pos.tobytes() != c.fleet.pos.tobytes()


def test_no_boat_on_land_no_ground_robot_in_water(harbour: dict) -> None:
    harbour["duration"] = 120
    harbour["robots"].append({"type": "ugv", "count": 3, "start": [1000, 1300]})
    # a target on land the boats would like to reach, and one at sea for the ground robots
    harbour["targets"] = [{"position": [1000, 1250], "level": "I"}, {"position": [1200, 600], "level": "I"}]
    sim = Simulation(parse_scenario(harbour, "harbour.yaml"), 1)
    dom = sim.fleet.domain
    boats, ground = dom == DOMAINS.index("surface"), dom == DOMAINS.index("ground")
    moved = np.zeros(len(sim.fleet), dtype=bool)
    start = sim.fleet.pos.copy()
    for _ in range(sim.sc.steps):
        sim.step()
        ok = sim.world.allowed_at(dom, sim.fleet.pos)
        assert ok[boats | ground].all()
    moved = np.linalg.norm(sim.fleet.pos - start, axis=1) > 20
    assert moved[boats].all() and moved[ground].any()  # they did try to go places


def test_minimum_separation_holds_in_a_crowd() -> None:
    res = circle_swap(40, spacing=4.0, max_factor=1.0)
    assert res["collisions"] == 0
    assert res["min_clearance_m"] >= 0.5 - 1e-9  # the configured margin


@pytest.mark.parametrize("n", [10, 100])
def test_circle_swap_makespan(n: int) -> None:
    res = circle_swap(n)
    assert res["collisions"] == 0 and res["arrived"] == n
    assert res["makespan_s"] <= 2 * res["straight_line_s"]


def _partition_scenario() -> dict:
    return {
        "name": "partition",
        "area": {"polygon": [[0, 0], [3000, 0], [3000, 1000], [0, 1000]]},
        "terrain": {"cell": 25, "default": "land"},
        "robots": [
            {"type": "quadcopter", "count": 3, "start": [200, 500], "role": "tasks"},
            {"type": "quadcopter", "count": 3, "start": [2800, 500], "role": "tasks"},
        ],
        # near the west team (done during the partition) and in the middle (reached after it heals)
        "targets": [{"position": [400, 600]}, {"position": [300, 300]}, {"position": [1500, 500]},
                    {"position": [1600, 800]}],
        "comms": {"period": 1.0},
        "failures": {"cuts": [{"start": 0, "end": 40, "x": 1500}]},
        "objectives": {"search": False, "visit": True},
        "duration": 200,
        "dt": 0.5,
    }


def test_no_task_done_twice_after_partition_heals() -> None:
    sim = Simulation(parse_scenario(_partition_scenario(), "partition.yaml"), 0)
    saw_conflict = False
    while sim.t < 40:
        sim.step()
        saw_conflict |= sim.cbba.conflicts(sim.fleet.alive) > 0
    assert saw_conflict  # both sides claimed the same tasks while cut off
    while sim.step_no < sim.sc.steps:
        sim.step()
    m = sim.metrics()
    assert m["tasks_done"] == 4
    assert m["duplicates"] == 0


def test_coverage_small_area_with_obstacles_and_losses() -> None:
    sc = parse_scenario({
        "name": "cov",
        "area": {"polygon": [[0, 0], [500, 0], [500, 500], [0, 500]]},
        "terrain": {"cell": 10, "default": "land"},
        "no_go": [[[150, 150], [250, 150], [250, 250], [150, 250]], [[350, 300], [420, 300], [420, 450], [350, 450]]],
        "robots": [{"type": "quadcopter", "count": 4, "start": [20, 20]}],
        "failures": {"lose": [{"time": 30, "robots": [0]}]},
        "objectives": {"search": True, "visit": False},
        "duration": 400, "dt": 0.5,
    }, "cov.yaml")
    sim = Simulation(sc, 0)
    m = sim.run().metrics
    assert m["coverage"] >= 0.99
    assert m["alive_at_end"] == 3


def test_allocation_thread_leaves_the_run_unchanged(harbour: dict) -> None:
    """The allocation round (and its exchange's radio) runs in a thread across two steps: the run is the
    one computed without the thread, and reading the allocation early (which waits for the round), a busy
    machine (other threads holding the interpreter) or the radio's neighbour query split between the
    threads change nothing."""
    import threading

    harbour["duration"] = 60
    # a task reported mid-run and a robot lost while rounds are in flight; latency from the file
    harbour["failures"] = {"lose": [{"time": 25, "robots": [1]}],
                           "new_tasks": [{"time": 20, "position": [400, 800], "level": "R", "value": 2}]}
    sc = parse_scenario(harbour, "harbour.yaml")
    assert sc.comms.latency > 0

    def run(peek: bool, busy: bool, thread: bool = True, split: bool = False) -> tuple[bytes, bytes, bytes, dict]:
        sim = Simulation(sc, 3)
        sim.inline_below = 0 if thread else 10**9  # this small fleet would run its rounds inline
        # the radio's neighbour query in two halves, one on the worker thread (large fleets only)
        sim.split_query_from = 1 if split else 10**9
        stop = threading.Event()
        noise = np.random.default_rng(0).random(200_000)
        hog = threading.Thread(target=lambda: [np.sort(noise) for _ in iter(stop.is_set, True)], daemon=True)
        if busy:
            hog.start()
        try:
            for _ in range(sc.steps):
                sim.step()
                if peek:
                    sim.cbba.conflicts(sim.fleet.alive)
        finally:
            stop.set()
        cb = sim.cbba
        assert cb.m == 5 and cb.round > 10 and not sim.fleet.alive[1]
        return sim.fleet.pos.tobytes(), cb.Z.tobytes(), cb.bundle.tobytes(), sim.metrics() | {"wall_s": 0, "steps_per_s": 0}

    ref = run(False, False, thread=False)
    assert run(False, False) == ref
    assert run(True, False) == ref
    assert run(False, True) == ref
    assert run(False, False, split=True) == ref
    assert run(True, True, split=True) == ref


def _wall_scenario(targets: list[dict]) -> dict:
    return {
        "name": "wall",
        "area": {"polygon": [[0, 0], [1000, 0], [1000, 600], [0, 600]]},
        "terrain": {"cell": 20, "default": "land",
                    # a wall with a way round its north end, and a pond with an island
                    "obstacles": [[[400, 0], [440, 0], [440, 500], [400, 500]]],
                    "water": [[[600, 350], [900, 350], [900, 600], [600, 600]]],
                    "land": [[[720, 440], [780, 440], [780, 520], [720, 520]]]},
        "robots": [{"type": "ugv", "count": 2, "start": [150, 150], "role": "tasks"}],
        "targets": targets,
        "objectives": {"search": False, "visit": True},
        "duration": 300,
        "dt": 0.5,
    }


def test_ground_robots_go_round_a_wall_to_a_task() -> None:
    # straight at the target the robot would press against the wall for good
    sim = Simulation(parse_scenario(_wall_scenario([{"position": [800, 150], "level": "R", "size": 6}]), "wall.yaml"), 0)
    ground = DOMAINS.index("ground")
    for _ in range(sim.sc.steps):
        sim.step()
        assert sim.world.allowed_at(sim.fleet.domain, sim.fleet.pos).all()
    m = sim.metrics()
    assert m["tasks_done"] == 1 and m["duplicates"] == 0
    assert (sim.fleet.domain == ground).all()


def test_unreachable_task_is_not_bid_on() -> None:
    # the island in the pond: no ground robot can get there, so none claims it (nor drives to the shore)
    sc = _wall_scenario([{"position": [750, 480], "level": "R", "size": 6}, {"position": [800, 150], "level": "R", "size": 6}])
    sim = Simulation(parse_scenario(sc, "wall.yaml"), 0)
    assert not sim.cbba.compat[:, 0].any() and sim.cbba.compat[:, 1].all()
    m = sim.run().metrics
    assert m["tasks_done"] == 1


def test_minimum_separation_is_the_true_minimum(harbour: dict) -> None:
    """The metric is the smallest clearance between any two robots over the run, also when they never
    come close enough for the separation filter (here they stay tens of metres apart)."""
    harbour["duration"] = 60
    sim = Simulation(parse_scenario(harbour, "harbour.yaml"), 2)
    radius = sim.fleet.param("radius")

    def brute() -> float:
        p, alive = sim.fleet.pos3(), sim.fleet.alive
        d = np.linalg.norm(p[:, None] - p[None, :], axis=2) - radius[:, None] - radius[None, :]
        d[~alive] = np.inf
        d[:, ~alive] = np.inf
        np.fill_diagonal(d, np.inf)
        return float(d.min())

    lowest = brute()
    for _ in range(sim.sc.steps):
        sim.step()
        lowest = min(lowest, brute())
    m = sim.metrics()
    assert m["collisions"] == 0 and lowest > 5
    assert m["min_separation_m"] == round(lowest, 3)


def test_allocation_scores_the_way_round() -> None:
    """The robot 200 m away in a straight line but behind a long wall loses the task to the one 400 m
    away in the open: bids use the travel distance the robots will drive."""
    sc = parse_scenario({
        "name": "detour",
        "area": {"polygon": [[0, 0], [2000, 0], [2000, 1000], [0, 1000]]},
        "terrain": {"cell": 20, "default": "land", "obstacles": [[[1000, 0], [1040, 0], [1040, 900], [1000, 900]]]},
        "robots": [{"type": "ugv", "count": 1, "start": [900, 100], "role": "tasks"},
                   {"type": "ugv", "count": 1, "start": [1500, 100], "role": "tasks"}],
        "targets": [{"position": [1100, 100], "level": "R", "size": 6}],
        "comms": {"period": 1.0},
        "objectives": {"search": False, "visit": True},
        "duration": 120, "dt": 0.5}, "detour.yaml")
    sim = Simulation(sc, 0)
    behind, open_side = int(np.argmin(sim.fleet.pos[:, 0])), int(np.argmax(sim.fleet.pos[:, 0]))
    for _ in range(20):
        sim.step()
    assert (sim.cbba.Z[:, 0] == open_side).all()
    m = sim.run().metrics
    assert m["tasks_done"] == 1 and m["targets"][0]["first_seen"]["R"] < 90
    assert sim.fleet.pos[behind, 0] < 1000  # the other one never went round


def test_travel_tables_of_straight_lines_allocate_as_straight_lines() -> None:
    from casemate.pack.allocation import CBBA, CBBAConfig

    r = np.random.default_rng(3)
    n, m = 60, 12
    pos, tasks = r.uniform(0, 1000, (n, 2)), r.uniform(0, 1000, (m, 2))
    value, speed, alive = r.uniform(1, 2, m), np.full(n, 10.0), np.ones(n, dtype=bool)
    src, dst = np.nonzero(np.hypot(*(pos[:, None] - pos[None, :]).transpose(2, 0, 1)) < 300)
    keep = src != dst
    src, dst = src[keep], dst[keep]
    runs = []
    for tables in (False, True):
        cb = CBBA(n, CBBAConfig(bundle_size=3))
        cb.add_tasks(tasks, value, np.ones((n, m), dtype=bool))
        for _ in range(30):
            travel = None
            if tables:
                d_at = np.sqrt(((pos[:, None, :] - tasks[None, :, :]) ** 2).sum(-1))
                travel = (d_at, cb._task_distances()[None], np.zeros(n, dtype=np.int64))
            cb.step_round(pos, speed, alive, src, dst, travel=travel)
        runs.append(cb)
    a, b = runs
    assert np.array_equal(a.Z, b.Z) and np.array_equal(a.path, b.path) and np.allclose(a.Y, b.Y)
    assert (a.Z >= 0).all()


def test_a_forked_copy_of_a_simulation_runs_on(harbour: dict) -> None:
    """A child process forked from a simulation (vectorised RL environments do this) has no worker
    thread of its own: it starts one and computes the same run as its parent."""
    import multiprocessing

    harbour["duration"] = 40
    sim = Simulation(parse_scenario(harbour, "harbour.yaml"), 5)
    sim.inline_below = 0  # the worker thread even for this small fleet
    for _ in range(10):
        sim.step()
    sim.settle()
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()

    def child() -> None:
        for _ in range(30):
            sim.step()
        out.put(sim.fleet.pos.tobytes() + sim.cbba.Z.tobytes())

    proc = ctx.Process(target=child)
    proc.start()
    proc.join(60)
    if proc.is_alive():
        proc.kill()
    assert proc.exitcode == 0, "the forked simulation hung or failed"
    for _ in range(30):
        sim.step()
    assert out.get(timeout=5) == sim.fleet.pos.tobytes() + sim.cbba.Z.tobytes()
    sim.close()
