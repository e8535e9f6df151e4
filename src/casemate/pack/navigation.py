"""Where robots go: search sweeps, surveillance (Lloyd), task goals, and routes round land, water,
obstacles and no-go zones along travel fields (also the travel tables CBBA scores with)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from casemate.errors import UsageError
from casemate.pack.coverage import lloyd_goals, plan_search
from casemate.pack.robots import SEARCH, SURVEIL
from casemate.pack.world import DOMAINS


@dataclass
class Flight:
    """A mission uploaded to one robot: waypoints in the area's metres, how close counts as reached."""

    points: np.ndarray  # (K,2)
    accept: np.ndarray  # (K,) m
    index: int = 0  # the waypoint it heads for
    reached: bool = False  # at the last one (it holds there)


class Navigation:
    """The navigation half of a Simulation (a mixin: the state lives on the Simulation)."""

    def fly_mission(self, robot: int, points: np.ndarray, accept_m: np.ndarray | float | None = None) -> None:
        """A mission from outside (a ground station's upload): the robot flies these waypoints (K,2) in
        order, round obstacles, and holds at the last one; meanwhile it is out of the pack's allocation
        (it neither bids nor acts on a task; the others take over its tasks when it falls silent).
        No points: back to the pack. Waypoints outside the area or where its domain may not be (land for
        a boat, a no-go zone) are refused, and nothing changes."""
        f, w = self.fleet, self.world
        robot = int(robot)
        if not 0 <= robot < len(f):
            raise UsageError(f"robot {robot}: robots are numbered 0 to {len(f) - 1}")
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        if len(pts) == 0:
            self.flights.pop(robot, None)
            return
        inside = w.inside_area(pts) & w.allowed_at(np.full(len(pts), int(f.domain[robot])), pts)
        if not inside.all():
            k = int(np.flatnonzero(~inside)[0])
            raise UsageError(f"waypoint {k} ({pts[k, 0]:.1f}, {pts[k, 1]:.1f}): outside the area or where robot "
                             f"{robot} ({DOMAINS[int(f.domain[robot])]}) may not go")
        default = max(w.cell * 0.75, 2 * float(f.param("radius")[robot]))
        acc = np.broadcast_to(np.asarray(default if accept_m is None else accept_m, dtype=np.float64), (len(pts),))
        self.flights[robot] = Flight(pts, np.where(acc > 0, acc, default))

    def _fly(self, goal: np.ndarray) -> None:
        """Robots flying an uploaded mission aim at their current waypoint (advanced once within reach)."""
        f = self.fleet
        for r, fl in self.flights.items():
            while fl.index < len(fl.points) - 1 and np.hypot(*(fl.points[fl.index] - f.pos[r])) <= fl.accept[fl.index]:
                fl.index += 1
            if fl.index == len(fl.points) - 1 and np.hypot(*(fl.points[-1] - f.pos[r])) <= fl.accept[-1]:
                fl.reached = True
            goal[r] = self._route(np.array([r]), fl.points[fl.index][None, :])[0] if f.alive[r] else np.nan

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

    def _preferred_velocities(self) -> np.ndarray:
        f, w = self.fleet, self.world
        n = len(f)
        goal = np.full((n, 2), np.nan)
        # tasks first
        head = self._heads() if self._cbba.m else np.full(n, -1)
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
        if self.flights:
            self._fly(goal)
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

