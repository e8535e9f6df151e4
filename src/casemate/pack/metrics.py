"""What a run reports: coverage, redundancy, separation, the replay frames, the header and the metrics."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from casemate.pack.approvals import GATE_NAMES, target_ids
from casemate.pack.avoidance import (
    avoidance_reach,
    min_separation,
)
from casemate.pack.sensing import LEVELS


@dataclass
class RunResult:
    metrics: dict[str, Any]
    frames: list[dict[str, Any]] = field(default_factory=list)
    header: dict[str, Any] = field(default_factory=dict)
    sightings: dict[int, dict[str, Any]] = field(default_factory=dict)  # target -> best sighting
    tasks: list[dict[str, Any]] = field(default_factory=list)  # per task: target id, gate, done at
    decisions: list[dict[str, Any]] = field(default_factory=list)  # gates as they changed


class Metrics:
    """The measuring half of a Simulation (a mixin: the state lives on the Simulation)."""

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

    def _note_sightings(self, robot: np.ndarray, target: np.ndarray, level: np.ndarray, dist: np.ndarray) -> None:
        """Keep, per target, the first sighting at its best level: who, when, where, at what range and GSD."""
        better = np.flatnonzero(level > self.sight_level[target])
        f = self.fleet
        for i in better:
            t, lv = int(target[i]), int(level[i])
            if lv <= self.sight_level[t]:
                continue
            r = int(robot[i])
            self.sight_level[t] = lv
            rng = float(dist[i])
            self.sightings[t] = {"level": LEVELS[lv], "robot": r, "robot_type": f.types[int(f.type_id[r])].name,
                                 "t": round(self.t, 2), "robot_xy": [round(float(v), 1) for v in f.pos[r]],
                                 "target_xy": [round(float(v), 1) for v in self.target_pos[t]],
                                 "range_m": round(rng, 1), "gsd_m": round(rng * float(f.param("ifov")[r]), 4),
                                 "sensor_range_m": float(f.param("sensor_range")[r])}

    def task_report(self) -> list[dict[str, Any]]:
        ids = target_ids(self.sc)
        return [{"task": ids[t] if t < len(ids) else str(t), "target": int(t), "level": LEVELS[int(lv)],
                 "gate": GATE_NAMES[int(g)], "done_at": None if np.isnan(at) else round(float(at), 2),
                 "executions": int(ex)}
                for t, lv, g, at, ex in zip(self.task_target, self.task_level, self.task_gate, self.task_done_at,
                                            self.executions, strict=True)]

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
        self.settle()  # the round in progress also runs the radio (its counts)
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

