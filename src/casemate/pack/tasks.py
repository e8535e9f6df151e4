"""Tasks of a mission: adding them (with where each robot goes and how close it must get), goals that
follow moving targets, tasks that appear mid-mission, and noticing when a robot has done one.

AllocView is what the robots act on while an allocation round runs on the worker thread."""

from __future__ import annotations

from typing import Any

import numpy as np

from casemate.pack.allocation.cbba import CBBA
from casemate.pack.approvals import (
    ACTIONABLE,
    APPROVED,
    DROPPED,
    FREE,
    GATE_NAMES,
    REJECTED,
    WAITING,
    Decision,
    rule_for,
    target_ids,
)
from casemate.pack.robots import TASKS
from casemate.pack.sensing import LEVELS, PIXELS
from casemate.pack.world import DOMAINS


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

    def committed(self, allowed: np.ndarray | None = None) -> np.ndarray:
        """(N,) the task each robot acts on (as CBBA.committed() on the state this view holds), or -1.

        With `allowed` (per task), a robot skips the tasks of its path that may not be acted on yet
        (waiting for an officer) and works on the first one that may."""
        if allowed is not None:
            p = self.path
            good = (p >= 0) & allowed[np.maximum(p, 0)] & (self.round - self.claimed >= self.commit)
            first = good.argmax(axis=1)
            return np.where(good.any(axis=1), p[np.arange(len(p)), first], -1)
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

    def withdraw(self, task: int) -> None:
        """Nobody is to act on the task (rejected, or dropped on timeout)."""
        self.done[:, task] = True
        rows = np.flatnonzero((self.path == task).any(axis=1))
        for agent in rows:
            keep = self.path[agent] != task
            k = int(keep.sum())
            self.path[agent, :k], self.path[agent, k:] = self.path[agent, keep], -1
            self.claimed[agent, :k], self.claimed[agent, k:] = self.claimed[agent, keep], 0
        self._head = None


class TaskBook:
    """The task half of a Simulation (a mixin: the state lives on the Simulation)."""

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
        rules = np.array([self._rule_of(int(t), lv) for t, lv in zip(targets, levels, strict=True)], dtype=np.int64)
        self.task_rule = np.r_[self.task_rule, rules]
        self.task_gate = np.r_[self.task_gate, np.where(rules >= 0, WAITING, FREE)]
        self.task_since = np.r_[self.task_since, np.full(k, self.t)]

    def _heads(self) -> np.ndarray:
        """(N,) the task each robot works on now: the head of its path, or with tasks waiting for an
        officer, the first task of its path it may act on."""
        head = self._view.committed() if not self._gated else self._view.committed(ACTIONABLE[self.task_gate])
        if self.flights:  # robots flying a ground station's mission act on no task of the pack's
            head = head.copy()
            head[list(self.flights)] = -1
        return head

    @property
    def _gated(self) -> bool:
        return bool(len(self.task_gate)) and bool((self.task_gate == WAITING).any())

    def _rule_of(self, target: int, level: int) -> int:
        if target >= len(self.sc.targets) or not self.sc.approvals:
            return -1
        k = rule_for(self.sc, target, self.sc.targets[target], self.target_pos[target], level)
        return -1 if k is None else k

    def _gates_now(self) -> None:
        """Apply the decisions that have reached the pack by now, then the timeout rules."""
        while self._decisions and self._decisions[0].at <= self.t:
            self.decide(self._decisions.pop(0))
        waiting = np.flatnonzero(self.task_gate == WAITING)
        for j in waiting:
            rule = self.sc.approvals[int(self.task_rule[j])]
            if rule.timeout is not None and self.t - self.task_since[j] >= rule.timeout and rule.on_timeout == "drop":
                self._set_gate(int(j), DROPPED, {"by": "timeout", "reason": f"no decision within {rule.timeout:g} s"})

    def decide(self, d: Decision) -> None:
        """An officer's decision on a marked task, now: approve lets robots act on it; reject withdraws
        it from the allocation (whoever held it is free)."""
        target = self._ids.get(d.task)
        rows = np.flatnonzero(self.task_target == target) if target is not None else np.zeros(0, dtype=np.int64)
        for j in rows:
            if self.task_gate[j] == WAITING:
                self._set_gate(int(j), APPROVED if d.decision == "approve" else REJECTED, {"by": d.by, "reason": d.reason})

    def _set_gate(self, j: int, gate: int, why: dict[str, Any]) -> None:
        self.task_gate[j] = gate
        tgt = int(self.task_target[j])
        self.decision_log.append({"t": round(self.t, 3), "task": target_ids(self.sc)[tgt] if tgt < len(self.sc.targets) else str(tgt),
                                  "gate": GATE_NAMES[gate], **why})
        if gate in (REJECTED, DROPPED):
            self._view.withdraw(j)
            self._withdrawn.append(j)

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

    def _new_task(self, k_ev: int, ev: Any) -> None:
        tid = len(self.target_pos)
        self.target_pos = np.vstack([self.target_pos, np.array(ev.position)[None, :]])
        self.target_vel = np.vstack([self.target_vel, np.zeros((1, 2))])
        self.target_size = np.r_[self.target_size, ev.size]
        self.target_best = np.r_[self.target_best, -1]
        self.sight_level = np.r_[self.sight_level, -1]
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

    def _tasks_progress(self) -> None:
        view = self._view
        if self._cbba.m == 0:
            return
        f = self.fleet
        head = self._heads()
        r = np.flatnonzero((head >= 0) & f.alive)
        if len(r) == 0:
            return
        j = head[r]
        d = np.linalg.norm(f.pos[r] - self.target_pos[self.task_target[j]], axis=1)
        done = (d <= self.task_need[r, j] / 0.9) & ACTIONABLE[self.task_gate[j]]  # a marked task waits for approval
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
            self._note_sightings(np.array([ri]), np.array([tgt]), np.array([lv]), d[r == ri][:1])
            view.complete(int(ri), int(jj))
            self._completed.append((int(ri), int(jj)))

