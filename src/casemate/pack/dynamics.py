"""Robot motion: speed, acceleration and turn-rate limits, and the domain constraint (no boat on land)."""

from __future__ import annotations

import numpy as np

from casemate.pack.robots import Fleet
from casemate.pack.world import World


def limit_velocity(fleet: Fleet, v_des: np.ndarray, dt: float) -> tuple[np.ndarray, np.ndarray]:
    """The velocity each robot can actually reach in one step toward v_des, and its new heading."""
    vmax = fleet.param("max_speed")
    amax = fleet.param("max_accel")
    wmax = fleet.param("turn_rate")
    speed_des = np.minimum(np.hypot(v_des[:, 0], v_des[:, 1]), vmax)
    speed = np.hypot(fleet.vel[:, 0], fleet.vel[:, 1])
    new_speed = np.clip(speed_des, speed - amax * dt, speed + amax * dt)
    new_speed = np.clip(new_speed, 0.0, vmax)
    want = np.arctan2(v_des[:, 1], v_des[:, 0])
    turning = speed_des > 1e-9
    dh = (want - fleet.heading + np.pi) % (2 * np.pi) - np.pi
    dh = np.clip(dh, -wmax * dt, wmax * dt)
    heading = np.where(turning, fleet.heading + dh, fleet.heading)
    vel = new_speed[:, None] * np.column_stack([np.cos(heading), np.sin(heading)])
    return vel, heading


def apply_domain(world: World, fleet: Fleet, old: np.ndarray, new: np.ndarray, vel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Keep every robot where its domain allows: slide along one axis if the move is blocked, else stay."""
    dom = fleet.domain
    ok = world.allowed_at(dom, new)
    if ok.all():
        return new, vel
    new = new.copy()
    vel = vel.copy()
    bad = np.flatnonzero(~ok)
    try_x = np.column_stack([new[bad, 0], old[bad, 1]])
    try_y = np.column_stack([old[bad, 0], new[bad, 1]])
    ok_x = world.allowed_at(dom[bad], try_x)
    ok_y = world.allowed_at(dom[bad], try_y) & ~ok_x
    stay = ~ok_x & ~ok_y
    new[bad[ok_x]] = try_x[ok_x]
    vel[bad[ok_x], 1] = 0.0
    new[bad[ok_y]] = try_y[ok_y]
    vel[bad[ok_y], 0] = 0.0
    new[bad[stay]] = old[bad[stay]]
    vel[bad[stay]] = 0.0
    return new, vel
