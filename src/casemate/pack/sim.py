"""The step loop: failures, comms + CBBA, planning, avoidance, dynamics, sensing, metrics, replay.

Everything per robot is an array; the only Python loops are over events (losses, replans) and over
message batches in CBBA. One seed feeds every random stream, so the same seed gives the same run.
The jobs live in their own modules, joined here: tasks (tasks.py), navigation (navigation.py), metrics
(metrics.py) and the allocation runner (runner.py, the worker thread allocation rounds run on).
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from typing import Any

import numpy as np
from scipy.spatial import cKDTree

from casemate.pack.allocation.cbba import CBBA, CBBAConfig
from casemate.pack.approvals import Decision, target_ids
from casemate.pack.avoidance import (
    AvoidanceConfig,
    avoidance_reach,
    choose_velocities,
    min_separation,
    separate,
)
from casemate.pack.comms import Comms
from casemate.pack.dynamics import apply_domain, limit_velocity
from casemate.pack.failures import losses_now
from casemate.pack.metrics import Metrics, RunResult
from casemate.pack.navigation import Flight, Navigation
from casemate.pack.robots import SEARCH, SURVEIL, TASKS, Fleet
from casemate.pack.runner import AllocationRunner
from casemate.pack.scenario import Scenario
from casemate.pack.sensing import footprint_offsets, sense
from casemate.pack.swap import circle_swap
from casemate.pack.tasks import AllocView, TaskBook
from casemate.pack.world import DOMAINS

__all__ = ["SEARCH", "SURVEIL", "TASKS", "AllocView", "RunResult", "Simulation", "circle_swap"]


class Simulation(TaskBook, Navigation, Metrics, AllocationRunner):
    """One world, one fleet, one seed."""

    def __init__(self, sc: Scenario, seed: int = 0, *, record_every: int | None = None, track_redundancy: bool | None = None,
                 decisions: Sequence[Decision] = ()) -> None:
        self.sc = sc
        self.seed = seed
        ss = np.random.SeedSequence(seed)
        self.rng_place, self.rng_comms, self.rng_sense, self.rng_fail, self.rng_misc = (np.random.default_rng(s) for s in ss.spawn(5))
        self.world = sc.world
        self.dt = sc.dt
        self.t = 0.0
        self.step_no = 0
        self._place_robots()
        n = len(self.fleet)
        self.avoid: AvoidanceConfig = sc.avoidance
        self.comms = Comms(sc.comms, self.rng_comms)
        self.comm_every = max(1, int(round(sc.comms.period / self.dt))) if sc.comms.period > 0 else 1
        self.latency_rounds = int(math.ceil(sc.comms.latency / max(sc.comms.period, self.dt))) if sc.comms.latency > 0 else 0
        self._inflight: deque[tuple[int, tuple[np.ndarray, ...], np.ndarray, np.ndarray]] = deque()
        # targets and tasks
        self.target_pos = np.array([t.position for t in sc.targets], dtype=np.float64).reshape(-1, 2)
        self.target_vel = np.array([t.velocity for t in sc.targets], dtype=np.float64).reshape(-1, 2)
        self.target_size = np.array([t.size for t in sc.targets], dtype=np.float64)
        self.target_best = np.full(len(sc.targets), -1, dtype=np.int64)
        self.target_first = np.full((len(sc.targets), 3), np.nan)
        self._cbba = CBBA(n, CBBAConfig(bundle_size=sc.bundle_size))
        # the allocation round runs in a thread across two steps (see _exchange); the robots act on this
        self._worker: ThreadPoolExecutor | None = None  # the thread allocation rounds run on
        self._worker_pid = 0
        self._round: Future | None = None
        self._near: tuple[int, tuple[np.ndarray, np.ndarray]] | None = None  # (step, neighbour query)
        self._last_tree: list | None = None  # [robots, KD-tree] of where the last step left them (separate)
        self._completed: list[tuple[int, int]] = []  # completions not yet handed to CBBA
        self._task_pos_moved = False
        self._view = AllocView(self._cbba)
        self._fields: dict[tuple[int, int], np.ndarray] = {}  # travel fields by (domain, goal cell)
        self._goals_moved = False
        self._field_stacks: dict[int, tuple[bytes, np.ndarray]] = {}  # per domain: goal cells, their fields
        self._extra_level: dict[int, int] = {}  # tasks that appear mid-mission
        self._extra_value: dict[int, float] = {}
        self.task_target = np.zeros(0, dtype=np.int64)  # task -> target row
        self.task_level = np.zeros(0, dtype=np.int64)
        self.task_goal = np.zeros((n, 0, 2))  # where each robot goes to do each task
        self.task_need = np.zeros((n, 0))  # range each robot must reach
        self.executions = np.zeros(0, dtype=np.int64)
        self.task_done_at = np.zeros(0)
        # an officer in the loop (approvals.py): each task's gate, its rule, when it started waiting
        self.task_gate = np.zeros(0, dtype=np.int64)
        self.task_rule = np.zeros(0, dtype=np.int64)
        self.task_since = np.zeros(0)
        self._ids = {tid: i for i, tid in enumerate(target_ids(sc))}
        self._decisions = sorted(decisions, key=lambda d: d.at)
        self._withdrawn: list[int] = []  # withdrawn tasks not yet handed to CBBA
        self.decision_log: list[dict[str, Any]] = []
        self.sight_level = np.full(len(sc.targets), -1, dtype=np.int64)
        self.sightings: dict[int, dict[str, Any]] = {}  # target -> its best sighting (findings)
        if sc.objectives["visit"]:
            vis = [i for i, t in enumerate(sc.targets) if t.visit]
            if vis:
                self._add_tasks(np.array(vis), None)
        # coverage
        ny, nx = self.world.shape
        self.last_seen = np.full(ny * nx, -np.inf)
        self.cover_target = np.zeros((ny, nx), dtype=bool)
        self.coverage_curve: list[list[float]] = []
        self._offsets = {ti: footprint_offsets(t.sensor_range, self.world.cell) for ti, t in enumerate(self.fleet.types)}
        self.plans: list[np.ndarray] = [np.zeros((0, 2)) for _ in range(n)]
        self.plan_idx = np.zeros(n, dtype=np.int64)
        self._wp_since = np.zeros(n)
        self._any_plan = False
        self._setup_search()
        if not self.cover_target.any():
            # no search objective: coverage still reports the share of the robots' domains seen so far
            for d in np.unique(self.fleet.domain):
                self.cover_target |= self.world.allowed[DOMAINS[d]]
        # redundancy: every time a target cell enters a robot's footprint counts as a visit; what entered
        # follows from the cell the robot moved from (a footprint is a fixed stencil per type)
        self._track = True if track_redundancy is None else bool(track_redundancy)
        self._prev_cell = np.zeros((n, 2), dtype=np.int64)
        self._prev_has = np.zeros(n, dtype=bool)  # whether the robot had a footprint last step
        self._stencil = {}
        for ti, off in self._offsets.items():
            rad = int(np.abs(off).max()) if len(off) else 0
            m = np.zeros((2 * rad + 1, 2 * rad + 1), dtype=bool)
            m[off[:, 0] + rad, off[:, 1] + rad] = True
            self._stencil[ti] = (rad, m)
        self.visits = 0
        self._lloyd_goal = self.fleet.pos.copy()
        self._surv_cells = None
        self._lloyd_cells: dict[str, tuple[np.ndarray, np.ndarray]] | None = None
        self._replan_at: float | None = None
        # metrics
        self.collisions = 0
        self.min_clearance = math.inf
        self.holds = 0
        self.redone = 0
        self.lost_robots: list[list[float]] = []
        self.frames: list[dict[str, Any]] = []
        steps = sc.steps
        self.record_every = record_every if record_every is not None else max(1, steps // 300)
        self.wall = 0.0
        self.v_override: np.ndarray | None = None
        self.flights: dict[int, Flight] = {}  # robot -> a mission uploaded from outside (fly_mission)

    def _place_robots(self) -> None:
        sc, w = self.sc, self.world
        types = list(sc.types.values())
        tindex = {t.name: i for i, t in enumerate(types)}
        rmax = max(sc.types[g.type].radius for g in sc.groups)
        taken = {0: set(), 1: set()}  # per layer (surface/ground vs air), cells already used
        pos, tid = [], []
        centres = w.centres()
        for g in sc.groups:
            rt = sc.types[g.type]
            spacing = max(g.spread, w.cell, 2 * rmax + sc.avoidance.margin + 0.5)
            stride = max(1, int(math.ceil(spacing / w.cell - 1e-9)))
            allowed = w.allowed[rt.domain].copy()
            ny, nx = w.shape
            sub = np.zeros_like(allowed)
            iy0, ix0, _ = w.cell_index(np.array([g.start]))
            sub[(iy0[0] % stride)::stride, (ix0[0] % stride)::stride] = True
            cand = np.flatnonzero((allowed & sub).ravel())
            layer = 1 if rt.domain == "air" else 0
            cand = np.array([c for c in cand if c not in taken[layer]], dtype=np.int64)
            if len(cand) < g.count:
                from casemate.errors import UsageError

                raise UsageError(f"scenario {sc.source}: robots: not enough room for {g.count} {g.type} in its domain")
            d = np.linalg.norm(centres[cand] - np.array(g.start), axis=1)
            pick = cand[np.lexsort((cand, d))[: g.count]]
            taken[layer].update(int(c) for c in pick)
            pos.append(centres[pick])
            tid.extend([tindex[g.type]] * g.count)
        pos_a = np.vstack(pos)
        heading = self.rng_place.uniform(-np.pi, np.pi, len(pos_a))
        self.fleet = Fleet.create(types, np.array(tid), pos_a, heading)
        roles = []
        for g in sc.groups:
            r = {"auto": SEARCH | SURVEIL | TASKS, "search": SEARCH, "surveil": SURVEIL, "tasks": TASKS}[g.role]
            roles.extend([r] * g.count)
        self.roles = np.array(roles, dtype=np.int64)

    def step(self) -> None:
        t0 = time.perf_counter()
        f, w, dt = self.fleet, self.world, self.dt
        n = len(f)
        # failures
        lost = losses_now(self.sc.failures, self.t, dt, f.alive, self.rng_fail)
        if lost.any():
            f.alive &= ~lost
            f.vel[lost] = 0.0
            for r in np.flatnonzero(lost):
                self.lost_robots.append([round(self.t + dt, 3), int(r)])
            # survivors notice when the lost robots stop talking (CBBA timeout), then share out the search
            self._replan_at = self.t + self._cbba.cfg.timeout * max(self.sc.comms.period, dt) * 0.2
        if self._replan_at is not None and self.t >= self._replan_at:
            self._replan_at = None
            self._plan_search(np.ones(n, dtype=bool))
        elif self.step_no % max(1, int(round(30.0 / dt))) == 0 and self._search_idle():
            # every searcher has finished (or given up on) its sweep and cells are still unseen:
            # sweep what is left
            self._plan_search(np.ones(n, dtype=bool))
        for k_ev, ev in enumerate(self.sc.failures.new_tasks):
            if self.t < ev.time <= self.t + dt:
                self._new_task(k_ev, ev)
        # moving targets
        if len(self.target_pos) and self.target_vel.any():
            self.target_pos += self.target_vel * dt
            inside = w.inside_area(self.target_pos)
            self.target_vel[~inside] *= -1
            self._task_pos_moved = True  # CBBA takes the new positions when its next round starts
            self._goals_moved = True  # the robots take the new goals at the next exchange
        if self._decisions or self._gated:
            self._gates_now()
        # comms + allocation (the allocation round runs beside the motion below, see _exchange)
        if self.step_no % self.comm_every == 0:
            self._exchange()
        # planning
        # a learned policy (the PettingZoo env) may drive the robots instead of the planners
        v_pref = self._preferred_velocities() if self.v_override is None else self.v_override
        radius = f.param("radius")
        vmax = f.param("max_speed")
        pos3 = f.pos3()
        near = self._near[1] if self._near is not None and self._near[0] == self.step_no else self._near_now(False)
        self._near = None
        v_cmd = choose_velocities(pos3, f.vel, v_pref, radius, vmax, f.alive, self.avoid, near)
        self._note_clearance(near)  # of where the last step left the robots
        vel, heading = limit_velocity(f, v_cmd, dt)
        vel[~f.alive] = 0.0
        new = f.pos + vel * dt
        new, vel = apply_domain(w, f, f.pos, new, vel)
        new3 = np.column_stack([new, pos3[:, 2]])
        sep_reach = float(2 * radius.max() + self.avoid.margin + 1.0)
        tree_out: list = []
        held, final3, sep = separate(pos3, new3, radius, f.alive, self.avoid.margin, self.rng_misc.permutation(n),
                                     sep_reach, tree_out)
        # the next step's neighbour query reuses it if nothing moved since
        self._last_tree = (tree_out or None) if self.reuse_tree else None
        self.holds += int(held.sum())
        vel[held] = 0.0
        f.pos = final3[:, :2].copy()
        f.vel = vel
        f.heading = np.where(f.alive, heading, f.heading)
        f.energy -= dt * f.alive
        flat = f.alive & (f.energy <= 0)
        if flat.any():
            f.alive &= ~flat
            for r in np.flatnonzero(flat):
                self.lost_robots.append([round(self.t + dt, 3), int(r)])
        if sep is not None and not flat.any():
            clear, coll = sep  # the filter's last search ran on these very positions
        else:
            clear, coll = min_separation(f.pos3(), radius, f.alive, sep_reach)
        self.min_clearance = min(self.min_clearance, clear)
        self.collisions += coll
        # sensing
        self._sense()
        self._tasks_progress()
        self.t += dt
        self.step_no += 1
        if self.step_no % self.record_every == 0:
            self._record()
        self.wall += time.perf_counter() - t0

    reuse_tree = True  # the neighbour query takes the separation filter's tree when the positions are its own
    split_query_from = 700  # robots in the worker's part: below (about 2,100 robots), one thread does it all

    def _near_now(self, radio: bool = True) -> tuple[np.ndarray, np.ndarray] | None:
        """The nearest-neighbour query of the alive robots this step, for avoidance and, on an exchange
        step, the radio too (positions do not change in between): as many neighbours and as far as
        the users need."""
        f = self.fleet
        idx = np.flatnonzero(f.alive)
        if len(idx) < 2:
            return None
        k = min(max(self.comms.cfg.max_neighbours if radio else 0, self.avoid.neighbours) + 1, len(idx))
        bound = avoidance_reach(f.param("radius"), f.param("max_speed"), f.alive, self.avoid)
        if radio:
            bound = max(bound, float(f.param("radio_range")[idx].max()))
        p3 = f.pos3()[idx]
        last, self._last_tree = self._last_tree, None
        if last is not None and np.array_equal(last[0], idx) and np.array_equal(last[1].data, p3):
            tree = last[1]  # the separation filter's tree of these very positions: the same tree
        else:
            tree = cKDTree(p3)
        h = len(p3) - len(p3) // 3  # the worker takes a third: it also runs the radio and the rounds
        if radio and len(f) >= self.inline_below and len(p3) - h >= self.split_query_from:
            # The radio's query (the step's largest) in two parts, the second on the worker thread, queued
            # behind its round (which the exchange waits for next anyway; it has usually finished); the
            # tree releases the GIL. Each row is the query of one point: the same rows as one query.
            other = self._submit(partial(tree.query, k=k, distance_upper_bound=bound), p3[h:])
            first = tree.query(p3[:h], k=k, distance_upper_bound=bound)
            second = other.result()
            near = (np.concatenate([first[0], second[0]]), np.concatenate([first[1], second[1]]))
        else:
            near = tree.query(p3, k=k, distance_upper_bound=bound)
        self._near = (self.step_no, near)
        return near

    def _sense(self) -> None:
        f, w = self.fleet, self.world
        ny, nx = w.shape
        alive = np.flatnonzero(f.alive)
        iy, ix, ok = w.cell_index(f.pos[alive])
        cells_all = []
        for ti, off in self._offsets.items():
            sel = f.type_id[alive] == ti
            if not sel.any():
                continue
            yy = iy[sel][:, None] + off[None, :, 0]
            xx = ix[sel][:, None] + off[None, :, 1]
            good = (yy >= 0) & (yy < ny) & (xx >= 0) & (xx < nx) & ok[sel][:, None]
            cells = np.where(good, yy * nx + xx, -1)
            cells_all.append(cells.ravel())
            if self._track:
                self._count_visits(alive[sel], iy[sel], ix[sel], ok[sel], off, cells, good, ti)
        if cells_all:
            c = np.concatenate(cells_all)
            self.last_seen[c[c >= 0]] = self.t
        if len(self.target_pos):
            det = sense(f.pos, f.alive, f.param("sensor_range"), f.param("ifov"), f.param("p_detect"), self.target_pos,
                        self.target_size, self.rng_sense)
            if len(det.target):
                self._note_sightings(det.robot, det.target, det.level, det.distance)
                best = np.full(len(self.target_pos), -1)
                np.maximum.at(best, det.target, det.level)
                for lv in range(3):
                    newly = (best >= lv) & np.isnan(self.target_first[:, lv])
                    self.target_first[newly, lv] = self.t
                self.target_best = np.maximum(self.target_best, best)

    def run(self, progress: Callable[[int], None] | None = None,
            between: Callable[[Simulation], None] | None = None) -> RunResult:
        """Every step of the scenario; `between(sim)` is called before each step (live decisions, pacing)."""
        self._record()
        try:
            for _ in range(self.sc.steps):
                if between is not None:
                    between(self)
                self.step()
                if progress is not None:
                    progress(1)
            return RunResult(self.metrics(), self.frames, self.header(), dict(self.sightings), self.task_report(),
                             list(self.decision_log))
        finally:
            self.close()
