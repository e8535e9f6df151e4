"""The classic avoidance stress test: robots on a circle swap to the antipodal points."""

from __future__ import annotations

from typing import Any

import numpy as np

from casemate.pack.avoidance import (
    AvoidanceConfig,
    choose_velocities,
    min_separation,
    orca_velocities,
    separate,
)
from casemate.pack.dynamics import limit_velocity
from casemate.pack.robots import Fleet


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

