"""The step loop: failures, comms + CBBA, planning, avoidance, dynamics, sensing, metrics, replay.

Everything per robot is an array; the only Python loops are over events (losses, replans) and over
message batches in CBBA. One seed feeds every random stream, so the same seed gives the same run.
The allocation round of an exchange step runs on a worker thread beside the motion of that step and
of the next one (on two cores they overlap); meanwhile the robots act on the allocation of the round
before (an AllocView, with their own completions applied), the way a robot keeps flying its task while
its computer works out the next round.
"""

from __future__ import annotations

import math
import os
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.spatial import cKDTree

from casemate.pack.allocation.cbba import CBBA, CBBAConfig
from casemate.pack.avoidance import (
    AvoidanceConfig,
    avoidance_reach,
    choose_velocities,
    min_separation,
    orca_velocities,
    separate,
)
from casemate.pack.comms import Comms
from casemate.pack.coverage import lloyd_goals, plan_search
from casemate.pack.dynamics import apply_domain, limit_velocity
from casemate.pack.failures import cut_mask, losses_now
from casemate.pack.robots import Fleet
from casemate.pack.scenario import Scenario
from casemate.pack.sensing import LEVELS, PIXELS, footprint_offsets, sense
from casemate.pack.world import DOMAINS

SEARCH, SURVEIL, TASKS = 1, 2, 4


class AllocView:
    """What the robots act on while an allocation round runs: each robot's path and the rounds its tasks
    were claimed, and who knows which task done, as the last finished round left them, with the
    completions seen since applied (the same ones are handed to CBBA before its next round)."""

    def __init__(self, cb: CBBA) -> None:
        self.commit = cb.cfg.commit
        self.round = cb.round
        self.path = cb.path.copy()
        rows = np.arange(cb.n)[:, None]
        self.claimed = (np.where(self.path >= 0, cb.claimed_at[rows, np.maximum(self.path, 0)], 0) if cb.m
                        else np.zeros_like(self.path))
        self.done = cb.done.copy()
        self._head: np.ndarray | None = None

    def committed(self) -> np.ndarray:
        """(N,) the task each robot acts on (as CBBA.committed() on the state this view holds), or -1."""
        if self._head is None:
            head = self.path[:, 0]
            ok = (head >= 0) & (self.round - self.claimed[:, 0] >= self.commit)
            self._head = np.where(ok, head, -1)
        return self._head

    def complete(self, agent: int, task: int) -> None:
        self.done[agent, task] = True
        keep = self.path[agent] != task
        k = int(keep.sum())
        self.path[agent, :k], self.path[agent, k:] = self.path[agent, keep], -1
        self.claimed[agent, :k], self.claimed[agent, k:] = self.claimed[agent, keep], 0
        self._head = None


@dataclass
class RunResult:
    metrics: dict[str, Any]
    frames: list[dict[str, Any]] = field(default_factory=list)
    header: dict[str, Any] = field(default_factory=dict)


class Simulation:
    """One world, one fleet, one seed."""

    def __init__(self, sc: Scenario, seed: int = 0, *, record_every: int | None = None, track_redundancy: bool | None = None) -> None:
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

    # ------------------------------------------------------------------ set-up
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

    def _add_tasks(self, targets: np.ndarray, known_by: np.ndarray | None) -> None:
        f, w = self.fleet, self.world
        n = len(f)
        k = len(targets)
        levels = np.array([LEVELS.index(self.sc.targets[t].level) if t < len(self.sc.targets) else self._extra_level[t]
                           for t in targets], dtype=np.int64)
        pos = self.target_pos[targets]
        need = np.minimum(self.target_size[targets][None, :] / (PIXELS[levels][None, :] * f.param("ifov")[:, None]),
                          f.param("sensor_range")[:, None]) * 0.9  # (n,k)
        goal = np.repeat(pos[None, :, :], n, axis=0)
        compat = (self.roles[:, None] & TASKS) > 0
        compat = np.repeat(compat, k, axis=1)
        for di, dname in enumerate(DOMAINS):
            rows = np.flatnonzero(f.domain == di)
            if len(rows) == 0:
                continue
            near, dist = w.nearest_allowed(dname, pos)
            goal[rows] = near[None, :, :]
            here = w.allowed_at(np.full(k, di), pos)
            goal[np.ix_(rows, np.flatnonzero(here))] = pos[here][None, :, :]
            reach = np.where(here, 0.0, dist)[None, :] <= need[rows] * 0.8
            # a robot only ever moves within its connected region of its domain (a lake, an island)
            labels = w.components(dname)
            giy, gix, _ = w.cell_index(goal[rows[0]])
            riy, rix, _ = w.cell_index(f.pos[rows])
            reach &= labels[riy, rix][:, None] == labels[giy, gix][None, :]
            compat[rows] &= reach
        values = np.array([self.sc.targets[t].value if t < len(self.sc.targets) else self._extra_value[t] for t in targets])
        self.cbba.add_tasks(pos, values, compat, known_by)  # (settles a running round first)
        self._view = AllocView(self._cbba)
        self.task_target = np.r_[self.task_target, targets]
        self.task_level = np.r_[self.task_level, levels]
        self.task_goal = np.concatenate([self.task_goal, goal], axis=1)
        self.task_need = np.concatenate([self.task_need, need], axis=1)
        self.executions = np.r_[self.executions, np.zeros(k, dtype=np.int64)]
        self.task_done_at = np.r_[self.task_done_at, np.full(k, np.nan)]

    def _move_goals(self) -> None:
        """Task goals follow moving targets: the target itself where a domain may be, else the nearest
        point it may."""
        if len(self.task_target) == 0:
            return
        f, w = self.fleet, self.world
        moving = np.flatnonzero((self.target_vel[self.task_target] != 0).any(axis=1))
        if len(moving) == 0:
            return
        pos = self.target_pos[self.task_target[moving]]
        for di, dname in enumerate(DOMAINS):
            rows = np.flatnonzero(f.domain == di)
            if len(rows) == 0:
                continue
            near, _ = w.nearest_allowed(dname, pos)
            here = w.allowed_at(np.full(len(moving), di), pos)
            self.task_goal[rows[:, None], moving[None, :]] = np.where(here[:, None], pos, near)[None, :, :]

    def _setup_search(self) -> None:
        w, f = self.world, self.fleet
        if not self.sc.objectives["search"]:
            return
        searchers = (self.roles & SEARCH) > 0
        present = {DOMAINS[d] for d in np.unique(f.domain[searchers])}
        claimed = np.zeros(w.shape, dtype=bool)
        self._search_target: dict[str, np.ndarray] = {}
        for dname in ("ground", "surface", "air"):
            if dname in present:
                tgt = w.allowed[dname] & ~claimed
                self._search_target[dname] = tgt
                claimed |= tgt
        self.cover_target = claimed
        self._plan_search(np.ones(len(f), dtype=bool))

    def _plan_search(self, who: np.ndarray) -> None:
        w, f = self.world, self.fleet
        uncovered = ~np.isfinite(self.last_seen).reshape(w.shape)
        for dname, tgt in getattr(self, "_search_target", {}).items():
            di = DOMAINS.index(dname)
            rows = np.flatnonzero(who & f.alive & ((self.roles & SEARCH) > 0) & (f.domain == di))
            if len(rows) == 0:
                continue
            # one swath per type: use the narrowest footprint of the group so lanes leave no gaps
            r = min(f.types[t].sensor_range for t in np.unique(f.type_id[rows]))
            swath = (2 * math.floor(r / w.cell) + 1) * w.cell
            plans = plan_search(w, tgt & uncovered, w.allowed[dname], f.pos[rows], swath)
            for r_i, p in zip(rows, plans, strict=True):
                self._any_plan = True
                self.plans[r_i] = p
                self.plan_idx[r_i] = 0
                self._wp_since[r_i] = self.t

    def _search_idle(self) -> bool:
        f = self.fleet
        searchers = np.flatnonzero(f.alive & ((self.roles & SEARCH) > 0))
        if len(searchers) == 0 or not getattr(self, "_search_target", None):
            return False
        if any(self.plan_idx[r] < len(self.plans[r]) for r in searchers):
            return False
        return self.coverage() < 1.0

    # ------------------------------------------------------------------ the step
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
        held, final3, sep = separate(pos3, new3, radius, f.alive, self.avoid.margin, self.rng_misc.permutation(n),
                                     sep_reach)
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

    def _new_task(self, k_ev: int, ev: Any) -> None:
        tid = len(self.target_pos)
        self.target_pos = np.vstack([self.target_pos, np.array(ev.position)[None, :]])
        self.target_vel = np.vstack([self.target_vel, np.zeros((1, 2))])
        self.target_size = np.r_[self.target_size, ev.size]
        self.target_best = np.r_[self.target_best, -1]
        self.target_first = np.vstack([self.target_first, np.full((1, 3), np.nan)])
        self._extra_level = {**self._extra_level, tid: LEVELS.index(ev.level)}
        self._extra_value = {**self._extra_value, tid: ev.value}
        # the alive robot nearest the new task hears of it first (a report); others learn by radio
        alive = np.flatnonzero(self.fleet.alive)
        known = np.zeros(len(self.fleet), dtype=bool)
        if len(alive):
            d = np.linalg.norm(self.fleet.pos[alive] - np.array(ev.position), axis=1)
            known[alive[np.argmin(d)]] = True
        if self.sc.objectives["visit"]:
            self._add_tasks(np.array([tid]), known)

    def _exchange(self) -> None:
        f = self.fleet
        src, dst = self.comms.links(f.pos3(), f.param("radio_range"), f.alive, self._near_now())
        cut = cut_mask(self.sc.failures, self.t, src, dst, f.pos)
        ok = self.comms.transmit(src, dst, len(f), cut)
        src, dst = src[ok], dst[ok]
        cb = self.cbba  # the previous round settled, the completions since handed over
        if cb.m == 0:
            return
        if self._goals_moved:
            self._move_goals()
            self._goals_moved = False
        if self._task_pos_moved:
            cb.task_pos = self.target_pos[self.task_target].copy()
            cb._dtt = None
            self._task_pos_moved = False
        # without latency the messages are consumed this round: the (N,N) timestamps need no copy
        snap = cb.snapshot(with_s=self.latency_rounds > 0)
        self._inflight.append((cb.round + self.latency_rounds, snap, src, dst))
        # one round per exchange; with latency the messages are the senders' state rounds ago
        due = self._inflight[0][0] <= cb.round
        if due:
            _, snap, s_src, s_dst = self._inflight.popleft()
        else:
            snap, s_src, s_dst = None, np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        # The round runs in a thread while the planning, avoidance, motion and sensing of this step and the
        # next go on (numpy and the KD-trees release the GIL, so on two cores they overlap). Meanwhile the
        # robots act on the allocation as the previous round left it (self._view); their completions are
        # queued and handed to CBBA, in order, before the next round, which is where a sequential run
        # would apply them too. Nothing else touches the allocation state while the round runs (reads
        # go through self.cbba, which waits for it), so the same seed still gives the same run.
        self._view = AllocView(cb)
        args = (f.pos.copy(), f.param("max_speed"), f.alive.copy(), s_src, s_dst, snap, self._travel_tables())
        self._round = self._submit(self._cbba.step_round, *args)

    travel_tables_max_tasks = 200  # beyond, allocation scores straight lines (a travel field per task and domain)

    def _travel_tables(self) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """Travel distances for CBBA's scores where the way round is clearly longer than the straight
        line (a wall, a headland, a no-go zone): robot -> task and task -> task per domain, from the
        same travel fields the robots drive by. None where every distance is a straight line, and
        CBBA then computes exactly what it always did."""
        f, w, cb = self.fleet, self.world, self._cbba
        m = cb.m
        if m == 0 or m > self.travel_tables_max_tasks:
            return None
        pos, tp = f.pos, cb.task_pos
        straight = np.sqrt(((pos[:, None, :] - tp[None, :, :]) ** 2).sum(-1))  # CBBA's own expression
        d_at, dtt = straight.copy(), cb._task_distances()
        dtt3 = np.repeat(dtt[None], len(DOMAINS), axis=0)
        rcell = w.flat_cell(pos)
        longer = False
        for di in np.unique(f.domain[f.alive]):
            rows = np.flatnonzero(f.domain == di)
            gcell = w.flat_cell(self.task_goal[rows[0]])  # (M,): where this domain's robots go for each task
            stack = self._field_stacks.get(int(di))
            if stack is None or stack[0] != gcell.tobytes():
                stack = self._field_stacks[int(di)] = (gcell.tobytes(),
                                                       np.stack([self._field(int(di), int(c)) for c in gcell]))
            fields = stack[1]  # (M, cells)
            # an 8-neighbour path is up to 8% longer than the straight line in the open
            v = fields[:, rcell[rows]].T  # (R, M)
            far = np.isfinite(v) & (v > 1.09 * straight[rows] + 2 * w.cell)
            if far.any():
                d_at[rows] = np.where(far, v, d_at[rows])
                longer = True
            vt = fields[:, gcell].T  # (M, M): from each task's goal to each task's goal
            far = np.isfinite(vt) & (vt > 1.09 * dtt + 2 * w.cell)
            if far.any():
                dtt3[di] = np.where(far, vt, dtt)
                longer = True
        return (d_at, dtt3, f.domain.copy()) if longer else None

    def _field(self, di: int, cell: int) -> np.ndarray:
        """The travel field of domain di to a (flat) cell, cached per domain and cell."""
        key = (di, cell)
        fld = self._fields.get(key)
        if fld is None:
            if len(self._fields) >= max(256, 4 * len(DOMAINS) * self._cbba.m):  # moving goals keep adding cells
                self._fields.clear()
            fld = self._fields[key] = self.world.travel_field(DOMAINS[di], cell)
        return fld

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
        near = cKDTree(p3).query(p3, k=k, distance_upper_bound=bound)
        self._near = (self.step_no, near)
        return near

    inline_below = 200  # robots: smaller fleets run their rounds on the calling thread (a thread costs more)

    def _note_clearance(self, near: tuple[np.ndarray, np.ndarray] | None) -> None:
        """The smallest clearance between robots in this neighbour query (within avoidance reach at
        least): the minimum separation also counts robots that never came close enough for the
        separation filter to look at them."""
        if near is None:
            return
        dist, nb = near[0][:, 1:], near[1][:, 1:]
        ok = np.isfinite(dist)
        if not ok.any():
            return
        idx = np.flatnonzero(self.fleet.alive)
        radius = self.fleet.param("radius")[idx]
        clear = dist - radius[:, None] - radius[np.minimum(nb, len(idx) - 1)]
        self.min_clearance = min(self.min_clearance, float(clear[ok].min()))

    def _submit(self, fn: Callable[..., Any], *args: Any) -> Future:
        """Run fn on the simulation's worker thread (after the jobs already there), or right here for a
        small fleet: the same results either way, only the time differs."""
        if len(self.fleet) < self.inline_below:
            done: Future = Future()
            try:
                done.set_result(fn(*args))
            except BaseException as e:  # surfaces in settle(), as from the thread
                done.set_exception(e)
            return done
        if self._worker is None or self._worker_pid != os.getpid():  # a forked child has no worker thread
            self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pack-sim")
            self._worker_pid = os.getpid()
        return self._worker.submit(fn, *args)

    @property
    def cbba(self) -> CBBA:
        """The allocation state, once the round in progress has finished and the completions since are in."""
        self.settle()
        return self._cbba

    def settle(self) -> None:
        """Wait for the allocation round in progress, if any (its errors surface here), then hand CBBA the
        completions seen since it started."""
        if self._round is not None:
            round_, self._round = self._round, None
            round_.result()  # its error, if any, surfaces here
        for agent, task in self._completed:
            self._cbba.complete(agent, task)
        self._completed.clear()

    def _preferred_velocities(self) -> np.ndarray:
        f, w = self.fleet, self.world
        n = len(f)
        goal = np.full((n, 2), np.nan)
        # tasks first
        head = self._view.committed() if self._cbba.m else np.full(n, -1)
        has_task = (head >= 0) & f.alive
        if has_task.any():
            r = np.flatnonzero(has_task)
            goal[r] = self._route(r, self.task_goal[r, head[r]])
        # search plans
        free = np.isnan(goal[:, 0]) & f.alive
        has_plan = np.array([self.plan_idx[r] < len(self.plans[r]) for r in range(n)]) if self._any_plan else np.zeros(n, dtype=bool)
        for r in np.flatnonzero(free & has_plan):
            p = self.plans[r]
            i = self.plan_idx[r]
            while i < len(p) and np.hypot(*(p[i] - f.pos[r])) < w.cell * 0.75:
                i += 1
            if i != self.plan_idx[r]:
                self._wp_since[r] = self.t
            elif i < len(p) and self.t - self._wp_since[r] > 20.0 + np.hypot(*(p[i] - f.pos[r])) / f.param("max_speed")[r] * 3:
                i += 1  # blocked (a hold, a wall): give up on this waypoint rather than stall forever
                self._wp_since[r] = self.t
            self.plan_idx[r] = i
            if i < len(p):
                goal[r] = p[i]
        # surveillance for the rest
        free = np.isnan(goal[:, 0]) & f.alive & ((self.roles & SURVEIL) > 0)
        if self.sc.objectives["surveillance"] and free.any():
            if self.step_no % max(1, int(round(5.0 / self.dt))) == 0 or self._surv_cells is None:
                self._update_lloyd(free)
            goal[free] = self._lloyd_goal[free]
        v = np.zeros((n, 2))
        has = ~np.isnan(goal[:, 0])
        if has.any():
            d = goal[has] - f.pos[has]
            dist = np.hypot(d[:, 0], d[:, 1])
            vmax = f.param("max_speed")[has]
            amax = f.param("max_accel")[has]
            # slow down to arrive: v <= sqrt(2 a d)
            speed = np.minimum(vmax, np.sqrt(2 * amax * dist))
            v[has] = d / np.maximum(dist, 1e-9)[:, None] * speed[:, None]
        return v

    def _route(self, rows: np.ndarray, goals: np.ndarray) -> np.ndarray:
        """Where robots `rows` heading for `goals` aim now: straight at the goal when nothing is in the
        way, else a few cells down the domain's travel field, around obstacles, land or water and no-go
        zones (fields are computed once per domain and goal cell)."""
        f, w = self.fleet, self.world
        out = goals.copy()
        straight = np.hypot(*(goals - f.pos[rows]).T)
        ny, nx = w.shape
        giy, gix, _ = w.cell_index(goals)
        riy, rix, _ = w.cell_index(f.pos[rows])
        key = (f.domain[rows] * ny + giy) * nx + gix
        for k in np.unique(key):
            sel = np.flatnonzero(key == k)
            di = int(f.domain[rows[sel[0]]])
            fld = self._field(di, int(k - di * ny * nx))
            along = fld[riy[sel] * nx + rix[sel]]
            # a way no more than a cell longer than the straight line leaves nothing to go round (a
            # grazed corner is slid along); otherwise the straight line itself is checked, since in the
            # open an 8-neighbour way is already up to 8% longer
            maybe = sel[np.isfinite(along) & (along > straight[sel] + w.cell)]
            if len(maybe) == 0:
                continue
            dom = f.domain[rows[maybe]]
            pos = f.pos[rows[maybe]]
            blocked = ~w.clear_line(dom, pos, goals[maybe])
            if not blocked.any():
                continue
            sel, dom, pos = maybe[blocked], dom[blocked], pos[blocked]
            chain = w.route_step(fld, pos)  # (steps, K, 2)
            aim = chain[0].copy()
            for step in chain[1:]:  # the farthest cell of the way still in straight sight
                clear = w.clear_line(dom, pos, step)
                aim[clear] = step[clear]
            out[sel] = aim
        return out

    def _update_lloyd(self, free: np.ndarray) -> None:
        """One Lloyd step for the free surveillance robots of each domain."""
        f, w = self.fleet, self.world
        if self._lloyd_cells is None:  # each domain's cells and centres: fixed for the run
            cells = w.centres()
            self._lloyd_cells = {d: (m, cells[m]) for d in DOMAINS if (m := w.allowed[d].ravel()).any()}
        for di, dname in enumerate(DOMAINS):
            rows = np.flatnonzero(free & (f.domain == di))
            if len(rows) == 0 or dname not in self._lloyd_cells:
                continue
            mask, cells = self._lloyd_cells[dname]
            seen = self.last_seen[mask]
            stale = np.where(np.isfinite(seen), self.t - seen, self.t + 60.0)
            weight = 1.0 + stale
            self._lloyd_goal[rows] = lloyd_goals(w, cells, weight, f.pos[rows])
        self._surv_cells = True

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
                best = np.full(len(self.target_pos), -1)
                np.maximum.at(best, det.target, det.level)
                for lv in range(3):
                    newly = (best >= lv) & np.isnan(self.target_first[:, lv])
                    self.target_first[newly, lv] = self.t
                self.target_best = np.maximum(self.target_best, best)

    def _count_visits(self, rows: np.ndarray, iy: np.ndarray, ix: np.ndarray, has: np.ndarray, off: np.ndarray,
                      cells: np.ndarray, good: np.ndarray, ti: int) -> None:
        """Count the target cells that entered these robots' footprints this step: a cell c + o of the
        new footprint was in the old one iff o + (c - previous c) is in the stencil."""
        rad, m = self._stencil[ti]
        sy = off[None, :, 0] + (iy - self._prev_cell[rows, 0])[:, None]
        sx = off[None, :, 1] + (ix - self._prev_cell[rows, 1])[:, None]
        near = (np.abs(sy) <= rad) & (np.abs(sx) <= rad) & self._prev_has[rows][:, None]
        was = near & m[np.clip(sy + rad, 0, 2 * rad), np.clip(sx + rad, 0, 2 * rad)]
        tgt = self.cover_target.ravel()
        self.visits += int((good & ~was & tgt[np.maximum(cells, 0)]).sum())
        self._prev_cell[rows, 0], self._prev_cell[rows, 1] = iy, ix
        self._prev_has[rows] = has

    def _tasks_progress(self) -> None:
        view = self._view
        if self._cbba.m == 0:
            return
        f = self.fleet
        head = view.committed()
        r = np.flatnonzero((head >= 0) & f.alive)
        if len(r) == 0:
            return
        j = head[r]
        d = np.linalg.norm(f.pos[r] - self.target_pos[self.task_target[j]], axis=1)
        done = d <= self.task_need[r, j] / 0.9
        for ri, jj in zip(r[done], j[done], strict=True):
            if self.executions[jj] > 0 and not (view.done[:, jj] & f.alive).any():
                # everyone who knew it was done is lost: its result went with them, so doing it
                # again is a redo, not a duplicate
                self.redone += 1
                self.executions[jj] -= 1
            self.executions[jj] += 1
            if np.isnan(self.task_done_at[jj]):
                self.task_done_at[jj] = self.t
            tgt = self.task_target[jj]
            self.target_best[tgt] = max(self.target_best[tgt], self.task_level[jj])
            lv = self.task_level[jj]
            first = self.target_first[tgt, : lv + 1]
            first[np.isnan(first)] = self.t
            view.complete(int(ri), int(jj))
            self._completed.append((int(ri), int(jj)))

    def coverage(self) -> float:
        tgt = self.cover_target.ravel()
        if not tgt.any():
            return float("nan")
        return float((np.isfinite(self.last_seen) & tgt).sum() / tgt.sum())

    def _record(self) -> None:
        f = self.fleet
        cov = self.coverage()
        self.coverage_curve.append([round(self.t, 3), round(cov, 5) if math.isfinite(cov) else None])
        self.frames.append({
            "t": round(self.t, 2),
            "x": np.round(f.pos[:, 0], 1).tolist(),
            "y": np.round(f.pos[:, 1], 1).tolist(),
            "alive": f.alive.astype(int).tolist(),
            "targets": np.round(self.target_pos, 1).tolist(),
            "found": self.target_best.tolist(),
            "coverage": round(cov, 4) if math.isfinite(cov) else None,
        })

    # ------------------------------------------------------------------ results
    def header(self) -> dict[str, Any]:
        w, f = self.world, self.fleet
        return {
            "scenario": self.sc.name,
            "label": self.sc.label,
            "seed": self.seed,
            "dt": self.dt,
            "extent": list(w.extent),
            "cell": w.cell,
            "area": np.round(w.area, 1).tolist(),
            "terrain": w.terrain.tolist() if w.terrain.size <= 250_000 else None,
            "nogo": w.nogo.astype(int).tolist() if w.nogo.size <= 250_000 and w.nogo.any() else None,
            "types": [t.name for t in f.types],
            "domains": [t.domain for t in f.types],
            "robot_type": f.type_id.tolist(),
        }

    def metrics(self) -> dict[str, Any]:
        f = self.fleet
        reach = avoidance_reach(f.param("radius"), f.param("max_speed"), f.alive, self.avoid) if f.alive.any() else 0.0
        # where the last step left the robots (each step notes where the one before left them)
        final = min_separation(f.pos3(), f.param("radius"), f.alive, reach)[0] if f.alive.sum() > 1 else math.inf
        self.min_clearance = min(self.min_clearance, final)
        cov = self.coverage()
        unique = int((np.isfinite(self.last_seen) & self.cover_target.ravel()).sum())
        dup = int(np.maximum(self.executions - 1, 0).sum())
        return {
            "scenario": self.sc.name,
            "label": self.sc.label,
            "seed": self.seed,
            "robots": len(self.fleet),
            "steps": self.step_no,
            "sim_time_s": round(self.t, 3),
            "wall_s": round(self.wall, 3),
            "steps_per_s": round(self.step_no / self.wall, 2) if self.wall > 0 else None,
            "coverage": round(cov, 5) if math.isfinite(cov) else None,
            "coverage_curve": self.coverage_curve,
            "redundancy": round((self.visits - unique) / unique, 4) if self._track and unique else None,
            "targets": [
                {"id": i, "level": LEVELS[b] if b >= 0 else None,
                 "first_seen": {LEVELS[k]: (None if np.isnan(v) else round(float(v), 2)) for k, v in enumerate(self.target_first[i])}}
                for i, b in enumerate(self.target_best)
            ],
            "targets_found": int((self.target_best >= 0).sum()),
            "tasks": int(self.cbba.m),
            "tasks_done": int((self.executions > 0).sum()),
            "duplicates": dup,
            "redone_after_loss": int(self.redone),
            "collisions": int(self.collisions),
            "min_separation_m": round(self.min_clearance, 3) if math.isfinite(self.min_clearance) else None,
            "emergency_holds": int(self.holds),
            "messages_sent": int(self.comms.sent),
            "messages_lost": int(self.comms.lost),
            "allocation_rounds": int(self.cbba.round),
            "robots_lost": self.lost_robots,
            "alive_at_end": int(self.fleet.alive.sum()),
        }

    def run(self, progress: Callable[[int], None] | None = None) -> RunResult:
        self._record()
        try:
            for _ in range(self.sc.steps):
                self.step()
                if progress is not None:
                    progress(1)
            return RunResult(self.metrics(), self.frames, self.header())
        finally:
            self.close()

    def close(self) -> None:
        """Finish the allocation round in progress and stop the worker thread (stepping again restarts it)."""
        try:
            self.settle()
        finally:
            if self._worker is not None:
                self._worker.shutdown(wait=True)
                self._worker = None


def run_scenario(sc: Scenario, seed: int = 0, progress: Callable[[int], None] | None = None) -> RunResult:
    return Simulation(sc, seed).run(progress)


def circle_swap(n: int, *, spacing: float = 6.0, robot: str = "quadcopter", dt: float = 0.2,
                cfg: AvoidanceConfig | None = None, max_factor: float = 4.0, method: str = "sampling") -> dict[str, Any]:
    """n robots on a circle each fly to the antipodal point: the classic avoidance stress test.

    Returns collisions, the smallest clearance seen, the makespan and the straight-line time (what one
    robot alone needs to fly its diameter with its speed and acceleration limits).
    """
    from casemate.pack.robots import BUILTIN_TYPES

    rt = BUILTIN_TYPES[robot]
    cfg = cfg or AvoidanceConfig()
    radius = max(20.0, n * spacing / (2 * np.pi))
    ang = np.arange(n) * 2 * np.pi / n
    start = radius * np.column_stack([np.cos(ang), np.sin(ang)])
    goal = -start
    fleet = Fleet.create([rt], np.zeros(n, dtype=np.int64), start, ang + np.pi)
    r = fleet.param("radius")
    vmax = fleet.param("max_speed")
    amax = fleet.param("max_accel")
    # the time one robot alone needs on its straight line, with its speed and acceleration limits
    d, v, a = 2 * radius, rt.max_speed, rt.max_accel
    straight = d / v + v / a if d >= v * v / a else 2 * np.sqrt(d / a)
    prio_rng = np.random.default_rng(0)  # who yields first in a pair: reshuffled every step
    t, collisions, clear_min, holds = 0.0, 0, np.inf, 0
    arrived_at = np.full(n, np.nan)
    while t < max_factor * straight + 30:
        d = goal - fleet.pos
        dist = np.hypot(d[:, 0], d[:, 1])
        arrived = dist < 1.0
        newly = arrived & np.isnan(arrived_at)
        arrived_at[newly] = t
        if np.isfinite(arrived_at).all():
            break
        speed = np.minimum(vmax, np.sqrt(2 * amax * dist))
        v_pref = np.where(arrived[:, None], 0.0, d / np.maximum(dist, 1e-9)[:, None] * speed[:, None])
        pos3 = fleet.pos3()
        if method == "orca":
            v_cmd = orca_velocities(pos3, fleet.vel, v_pref, r, vmax, fleet.alive, cfg, dt)
        else:
            v_cmd = choose_velocities(pos3, fleet.vel, v_pref, r, vmax, fleet.alive, cfg)
        vel, heading = limit_velocity(fleet, v_cmd, dt)
        new3 = np.column_stack([fleet.pos + vel * dt, pos3[:, 2]])
        reach = float(2 * r.max() + cfg.margin + 1)
        held, final3, sep = separate(pos3, new3, r, fleet.alive, cfg.margin, prio_rng.permutation(n), reach)
        holds += int(held.sum())
        vel[held] = 0.0
        fleet.pos, fleet.vel, fleet.heading = final3[:, :2].copy(), vel, heading
        c, k = sep if sep is not None else min_separation(fleet.pos3(), r, fleet.alive, reach)
        clear_min, collisions = min(clear_min, c), collisions + k
        t += dt
    done = np.isfinite(arrived_at)
    return {
        "robots": n,
        "collisions": collisions,
        "min_clearance_m": float(clear_min),
        "makespan_s": float(np.nanmax(arrived_at)) if done.all() else None,
        "arrived": int(done.sum()),
        "straight_line_s": float(straight),
        "emergency_holds": holds,
    }
