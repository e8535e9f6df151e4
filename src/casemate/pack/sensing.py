"""Sensors: detection probability by range and D/R/I grading by pixels on target (Johnson criteria)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from casemate.johnson import JOHNSON_PX, LEVELS

# pixels across the target needed to detect / recognise / identify, in LEVELS order (the one table)
PIXELS = np.array([JOHNSON_PX[level] for level in LEVELS])
ALL_PAIRS_MAX = 4_000_000  # robot-target pairs up to which sensing takes every distance at once


@dataclass
class Detections:
    robot: np.ndarray
    target: np.ndarray
    level: np.ndarray  # 0=D, 1=R, 2=I
    distance: np.ndarray


def sense(pos: np.ndarray, alive: np.ndarray, sensor_range: np.ndarray, ifov: np.ndarray, p_detect: np.ndarray,
          targets: np.ndarray, target_size: np.ndarray, rng: np.random.Generator) -> Detections:
    """Which robots see which targets this step, and at what level.

    Probability of detection falls with range: p_detect * (1 - (r / range)^2); the level is the highest
    whose pixel criterion the range meets.
    """
    empty = np.zeros(0, dtype=np.int64)
    idx = np.flatnonzero(alive)
    if len(idx) == 0 or len(targets) == 0:
        return Detections(empty, empty, empty, np.zeros(0))
    if len(idx) * len(targets) <= ALL_PAIRS_MAX:
        # few targets: every robot-target distance at once beats building two trees every step
        # (the same arithmetic as the tree's: sqrt(dx*dx + dy*dy); pairs in (robot, target) order)
        p_ = pos[idx]
        dx = p_[:, 0][:, None] - targets[:, 0][None, :]
        dy = p_[:, 1][:, None] - targets[:, 1][None, :]
        dist = np.sqrt(dx * dx + dy * dy)
        r_l, tj = np.nonzero(dist <= sensor_range[idx][:, None])
        ri, d = idx[r_l], dist[r_l, tj]
        rng_r = sensor_range[ri]
    else:
        tr = cKDTree(pos[idx])
        tt = cKDTree(targets)
        coo = tr.sparse_distance_matrix(tt, float(sensor_range[idx].max()), output_type="coo_matrix")
        ri, tj, d = idx[coo.row], coo.col.astype(np.int64), coo.data
        # sparse_distance_matrix may omit exact zeros; a robot on top of a target sees it (once)
        zero = tt.query(pos[idx], k=1, distance_upper_bound=1e-9)
        hit0 = np.flatnonzero(np.isfinite(zero[0]) & (zero[0] == 0))
        if len(hit0):
            t0 = zero[1][hit0]
            new = ~np.isin(idx[hit0] * len(targets) + t0, ri * len(targets) + tj)
            ri = np.r_[ri, idx[hit0][new]]
            tj = np.r_[tj, t0[new]]
            d = np.r_[d, np.zeros(int(new.sum()))]
        order = np.lexsort((tj, ri))
        ri, tj, d = ri[order], tj[order], d[order]
        rng_r = sensor_range[ri]
        inside = d <= rng_r
        ri, tj, d, rng_r = ri[inside], tj[inside], d[inside], rng_r[inside]
    p = p_detect[ri] * (1.0 - (d / rng_r) ** 2)
    seen = rng.random(len(d)) < p
    ri, tj, d = ri[seen], tj[seen], d[seen]
    px = target_size[tj] / (np.maximum(d, 1e-6) * ifov[ri])
    level = (px[:, None] >= PIXELS[None, :]).sum(axis=1) - 1
    ok = level >= 0
    return Detections(ri[ok], tj[ok], level[ok], d[ok])


def footprint_offsets(radius: float, cell: float) -> np.ndarray:
    """(K,2) cell offsets (dy, dx) whose centres lie within radius of a cell centre."""
    k = int(np.ceil(radius / cell))
    dy, dx = np.mgrid[-k:k + 1, -k:k + 1]
    keep = (dy * cell) ** 2 + (dx * cell) ** 2 <= radius**2
    return np.column_stack([dy[keep], dx[keep]])
