"""Collision avoidance: reciprocal velocity selection plus a safety filter that guarantees separation.

Each robot scores a fan of candidate velocities against its nearest neighbours with the reciprocal
velocity obstacle test (time to collision of 2v - v_self against the neighbour's velocity), with a
small bias to pass on the right so symmetric encounters do not deadlock. Sampling alone guarantees
nothing, so after motion a filter holds in place any robot whose move would break the minimum
separation, iterating until no pair is too close: holding everyone is always safe, so it terminates
and the separation holds every step (an emergency hold may exceed the acceleration limit; it is
counted).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

_ANGLES = np.deg2rad(np.array([0, -15, 15, -30, 30, -50, 50, -75, 75, -105, 105, -140, 140, 180], dtype=np.float64))
_SCALES = np.array([1.0, 0.5], dtype=np.float64)


@dataclass(frozen=True)
class AvoidanceConfig:
    horizon: float = 5.0  # s: look-ahead for time to collision
    neighbours: int = 10
    margin: float = 0.5  # m added to the sum of radii for the guaranteed separation
    right_bias: float = 0.6  # cost per radian of turning left: everyone passes on the right
    stop_cost: float = 0.5  # extra cost of standing still (keeps a crowd flowing instead of jamming)
    danger: float = 4.0


def avoidance_reach(radius: np.ndarray, vmax: np.ndarray, active: np.ndarray, cfg: AvoidanceConfig) -> float:
    """How far avoidance looks for neighbours: both robots at top speed over the horizon, plus bodies."""
    return float(2 * vmax[active].max() * cfg.horizon + 2 * radius[active].max() + cfg.margin)


def choose_velocities(
    pos3: np.ndarray,
    vel: np.ndarray,
    v_pref: np.ndarray,
    radius: np.ndarray,
    vmax: np.ndarray,
    active: np.ndarray,
    cfg: AvoidanceConfig,
    near: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """Velocities close to v_pref that avoid predicted collisions with neighbours (vectorised).

    `near`: an existing nearest-neighbour query of the active robots on themselves (distances and
    indices into the active robots, nearest first, at least `cfg.neighbours + 1` columns and a bound
    at least avoidance_reach()), reused instead of a new one."""
    out = v_pref.copy()
    idx = np.flatnonzero(active)
    n = len(idx)
    if n < 2:
        return out
    p3 = pos3[idx]
    reach = avoidance_reach(radius, vmax, active, cfg)
    k = min(cfg.neighbours + 1, n)
    if near is None:
        dist, nb = cKDTree(p3).query(p3, k=k, distance_upper_bound=reach)
    else:
        dist, nb = near[0][:, :k], near[1][:, :k]
        dist = np.where(dist <= reach, dist, np.inf)  # as a query bounded by the reach would have it
    dist, nb = dist[:, 1:], nb[:, 1:]
    valid = np.isfinite(dist)
    if not valid.any():
        return out
    nb = np.where(valid, nb, 0)
    # only robots with a neighbour in reach are looked at, and only those whose preferred velocity is
    # predicted to collide pay for the candidate fan
    busy = np.flatnonzero(valid.any(axis=1))
    nb, valid = nb[busy], valid[busy]
    me = idx[busy]
    others = idx[nb]
    # per-component 1-D gathers: much cheaper than gathering (B,K,3) rows and slicing them
    px, py, pz = (np.ascontiguousarray(pos3[:, d]) for d in range(3))
    rpx, rpy = px[others] - px[me][:, None], py[others] - py[me][:, None]  # (B,K)
    rel_p = np.stack([rpx, rpy], axis=-1)  # (B,K,2)
    rsum = radius[others] + radius[me][:, None] + cfg.margin
    mask = valid & (np.abs(pz[others] - pz[me][:, None]) < rsum)

    def ttc_min(sel: np.ndarray, cand: np.ndarray) -> np.ndarray:
        # reciprocal: I take half the avoidance, so test 2v - v_self against the neighbour's velocity
        rv = (2 * cand[:, :, None, :] - vel[me[sel]][:, None, None, :]) - vel[others[sel]][:, None, :, :]  # (B,C,K,2)
        rp = rel_p[sel]
        a = (rv**2).sum(-1)
        b = (rp[:, None] * rv).sum(-1)
        c = (rp**2).sum(-1) - rsum[sel] ** 2  # (B,K)
        disc = b * b - a * c[:, None]
        with np.errstate(divide="ignore", invalid="ignore"):
            t = (b - np.sqrt(np.maximum(disc, 0))) / a
        hit = (disc > 0) & (b > 0) & (a > 1e-12)
        ttc = np.where(hit, t, np.inf)
        ttc = np.where(c[:, None] < 0, 0.0, ttc)
        ttc = np.where(mask[sel][:, None, :], ttc, np.inf)
        return ttc.min(axis=2)  # (B,C)

    vp_all = v_pref[me]
    # the preferred velocity alone, the same arithmetic as ttc_min on (B,K) component arrays
    vx, vy = np.ascontiguousarray(vel[:, 0]), np.ascontiguousarray(vel[:, 1])
    rvx = (2 * vp_all[:, 0] - vx[me])[:, None] - vx[others]
    rvy = (2 * vp_all[:, 1] - vy[me])[:, None] - vy[others]
    a = rvx * rvx + rvy * rvy
    b = rpx * rvx + rpy * rvy
    c = (rpx * rpx + rpy * rpy) - rsum * rsum
    disc = b * b - a * c
    with np.errstate(divide="ignore", invalid="ignore"):
        tt = (b - np.sqrt(np.maximum(disc, 0))) / a
    tt = np.where((disc > 0) & (b > 0) & (a > 1e-12), tt, np.inf)
    tt = np.where(c < 0, 0.0, tt)
    t0 = np.where(mask, tt, np.inf).min(axis=1)
    risky = np.flatnonzero(t0 < cfg.horizon)
    if len(risky) == 0:
        return out
    me_r = me[risky]
    vp = vp_all[risky]
    sp = np.hypot(vp[:, 0], vp[:, 1])
    base = np.arctan2(vp[:, 1], vp[:, 0])
    base = np.where(sp > 1e-9, base, np.arctan2(vel[me_r, 1], vel[me_r, 0]))
    spd = np.where(sp > 1e-9, sp, vmax[me_r] * 0.5)
    ang = base[:, None] + _ANGLES[None, :]  # (B,A)
    dirs = np.stack([np.cos(ang), np.sin(ang)], axis=-1)  # (B,A,2)
    fan = (spd[:, None, None, None] * _SCALES[None, :, None, None] * dirs[:, None, :, :]).reshape(len(me_r), -1, 2)
    cand = np.concatenate([fan, np.zeros((len(me_r), 1, 2))], axis=1)  # (B,C,2), scale-major
    cand[:, 0] = vp
    tmin = ttc_min(risky, cand)
    dev = np.hypot(*(cand - vp[:, None, :]).transpose(2, 0, 1)) / np.maximum(vmax[me_r], 1e-9)[:, None]
    danger = np.where(tmin < cfg.horizon, (cfg.horizon - tmin) / cfg.horizon, 0.0) * cfg.danger
    left = np.concatenate([np.tile(np.maximum(_ANGLES, 0), len(_SCALES)), [0.0]])
    stop = np.zeros(cand.shape[1])
    stop[-1] = cfg.stop_cost
    cost = dev + danger + cfg.right_bias * left[None, :] + stop[None, :]
    best = np.argmin(cost, axis=1)
    out[me_r] = cand[np.arange(len(me_r)), best]
    return out


def separation_filter(
    pos3_old: np.ndarray,
    pos3_new: np.ndarray,
    radius: np.ndarray,
    active: np.ndarray,
    margin: float,
    priority: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Hold robots whose move would break the separation; returns (held mask, final 3-D positions).

    In a pair that would come too close, only the robot of lower `priority` holds first (if one of
    them already holds, the other does): holding both would freeze symmetric crowds for good. The
    loop re-checks until no pair is too close; holding everyone is always safe, so it terminates."""
    held, pos, _ = separate(pos3_old, pos3_new, radius, active, margin, priority)
    return held, pos


def separate(
    pos3_old: np.ndarray,
    pos3_new: np.ndarray,
    radius: np.ndarray,
    active: np.ndarray,
    margin: float,
    priority: np.ndarray | None = None,
    reach: float = 0.0,
    tree_out: list | None = None,
) -> tuple[np.ndarray, np.ndarray, tuple[float, int] | None]:
    """`separation_filter`, plus what `min_separation(final, radius, active, reach)` would return: the
    filter's last neighbour search already ran on the final positions (searched out to `reach` as well),
    so the step needs no second tree. None when that is not known (the loop ran out).

    `tree_out`: a list that receives [active indices, the KD-tree of their final positions] where the
    report is not None (the next step's neighbour query may reuse the tree: same data, same tree)."""
    pos = pos3_new.copy()
    held = np.zeros(len(pos), dtype=bool)
    idx = np.flatnonzero(active)
    if len(idx) < 2:
        return held, pos, (float("inf"), 0)
    rmax = float(radius[idx].max())
    r_query = max(2 * rmax + margin, reach)

    def report(i: np.ndarray, j: np.ndarray, d: np.ndarray) -> tuple[float, int]:
        near = d <= reach
        if not near.any():
            return float("inf"), 0
        clear = d[near] - radius[i[near]] - radius[j[near]]
        return float(clear.min()), int((clear < 0).sum())

    for _ in range(len(idx) + 1):
        tree = cKDTree(pos[idx])
        if tree_out is not None:
            tree_out[:] = [idx, tree]
        pairs = tree.query_pairs(r_query, output_type="ndarray")
        if len(pairs) == 0:
            return held, pos, (float("inf"), 0)
        pi, pj = idx[pairs[:, 0]], idx[pairs[:, 1]]
        d = np.linalg.norm(pos[pi] - pos[pj], axis=1)
        bad = d < radius[pi] + radius[pj] + margin
        if not bad.any():
            return held, pos, report(pi, pj, d)
        i, j = pi[bad], pj[bad]
        if priority is None:
            movers = np.unique(np.concatenate([i, j]))
        else:
            hi, hj = held[i], held[j]
            both_free = ~hi & ~hj
            lower = np.where(priority[i] < priority[j], i, j)
            movers = np.unique(np.concatenate([lower[both_free], j[hi & ~hj], i[hj & ~hi]]))
        movers = movers[~held[movers]]
        if len(movers) == 0:
            # everyone involved already holds: they were apart before (see min_separation)
            return held, pos, report(pi, pj, d)
        held[movers] = True
        pos[movers] = pos3_old[movers]
    if tree_out is not None:
        tree_out.clear()  # the last tree is not of the final positions
    return held, pos, None


def min_separation(pos3: np.ndarray, radius: np.ndarray, active: np.ndarray, reach: float) -> tuple[float, int]:
    """Smallest clearance (distance minus radii) between active robots within reach, and colliding pairs."""
    idx = np.flatnonzero(active)
    if len(idx) < 2:
        return float("inf"), 0
    tree = cKDTree(pos3[idx])
    pairs = tree.query_pairs(reach, output_type="ndarray")
    if len(pairs) == 0:
        return float("inf"), 0
    i, j = idx[pairs[:, 0]], idx[pairs[:, 1]]
    clear = np.linalg.norm(pos3[i] - pos3[j], axis=1) - radius[i] - radius[j]
    return float(clear.min()), int((clear < 0).sum())


def orca_velocities(
    pos3: np.ndarray,
    vel: np.ndarray,
    v_pref: np.ndarray,
    radius: np.ndarray,
    vmax: np.ndarray,
    active: np.ndarray,
    cfg: AvoidanceConfig,
    dt: float,
) -> np.ndarray:
    """ORCA (van den Berg et al., 2011): each neighbour gives a half-plane of allowed velocities, each
    robot taking half the avoidance. The small linear programme is solved over candidates (the
    preferred velocity, its projection on every half-plane, and a fan) vectorised over robots: the
    feasible candidate nearest the preferred velocity wins, else the least-violating one."""
    out = v_pref.copy()
    idx = np.flatnonzero(active)
    n = len(idx)
    if n < 2:
        return out
    p3 = pos3[idx]
    reach = float(2 * vmax[idx].max() * cfg.horizon + 2 * radius[idx].max() + cfg.margin)
    k = min(cfg.neighbours + 1, n)
    dist, nb = cKDTree(p3).query(p3, k=k, distance_upper_bound=reach)
    dist, nb = dist[:, 1:], nb[:, 1:]
    valid = np.isfinite(dist)
    busy = np.flatnonzero(valid.any(axis=1))
    if len(busy) == 0:
        return out
    nb, valid = np.where(valid[busy], nb[busy], 0), valid[busy]
    me, oth = idx[busy], idx[nb]
    same = np.abs(pos3[oth][:, :, 2] - pos3[me][:, None, 2]) < 1.0
    valid &= same
    rel_p = pos3[oth][:, :, :2] - pos3[me][:, None, :2]  # (B,K,2)
    rel_v = vel[me][:, None, :] - vel[oth]
    dsq = (rel_p**2).sum(-1)
    r = radius[me][:, None] + radius[oth] + cfg.margin
    rsq = r * r
    inv_tau = 1.0 / cfg.horizon
    w = rel_v - inv_tau * rel_p
    wsq = (w**2).sum(-1)
    dot1 = (w * rel_p).sum(-1)
    wlen = np.sqrt(np.maximum(wsq, 1e-18))
    unit_w = w / wlen[..., None]
    # cut-off circle
    dir_c = np.stack([unit_w[..., 1], -unit_w[..., 0]], -1)
    u_c = (r * inv_tau - wlen)[..., None] * unit_w
    # legs
    leg = np.sqrt(np.maximum(dsq - rsq, 0.0))
    px, py = rel_p[..., 0], rel_p[..., 1]
    left = (px * w[..., 1] - py * w[..., 0]) > 0
    dl = np.stack([px * leg - py * r, px * r + py * leg], -1) / dsq[..., None]
    dr = -np.stack([px * leg + py * r, -px * r + py * leg], -1) / dsq[..., None]
    dir_l = np.where(left[..., None], dl, dr)
    u_l = (rel_v * dir_l).sum(-1)[..., None] * dir_l - rel_v
    use_c = (dot1 < 0) & (dot1 * dot1 > rsq * wsq)
    direction = np.where(use_c[..., None], dir_c, dir_l)
    u = np.where(use_c[..., None], u_c, u_l)
    # already overlapping: resolve within one step
    coll = dsq <= rsq
    w2 = rel_v - rel_p / dt
    w2len = np.sqrt(np.maximum((w2**2).sum(-1), 1e-18))
    uw2 = w2 / w2len[..., None]
    direction = np.where(coll[..., None], np.stack([uw2[..., 1], -uw2[..., 0]], -1), direction)
    u = np.where(coll[..., None], (r / dt - w2len)[..., None] * uw2, u)
    point = vel[me][:, None, :] + 0.5 * u  # (B,K,2)
    vp = v_pref[me]
    # candidates: v_pref, its projection on each line, a fan, and standing still
    proj = point + direction * ((vp[:, None, :] - point) * direction).sum(-1)[..., None]
    ang = np.arctan2(vp[:, 1], vp[:, 0])[:, None] + np.linspace(-np.pi, np.pi, 24, endpoint=False)[None, :]
    fan = np.concatenate([vmax[me][:, None, None] * s * np.stack([np.cos(ang), np.sin(ang)], -1) for s in (1.0, 0.5)], axis=1)
    # pairwise intersections of the half-plane lines: the vertices where the LP optimum usually sits
    K = direction.shape[1]
    ia, ib = np.triu_indices(K, 1)
    da, db = direction[:, ia], direction[:, ib]
    pa, pb = point[:, ia], point[:, ib]
    den = da[..., 0] * db[..., 1] - da[..., 1] * db[..., 0]
    tpar = ((pb - pa)[..., 0] * db[..., 1] - (pb - pa)[..., 1] * db[..., 0]) / np.where(np.abs(den) > 1e-9, den, 1.0)
    inter = pa + da * tpar[..., None]
    inter = np.where((np.abs(den) > 1e-9)[..., None], inter, 0.0)
    cand = np.concatenate([vp[:, None, :], proj, inter, fan, np.zeros((len(me), 1, 2))], axis=1)  # (B,C,2)
    sp = np.hypot(cand[..., 0], cand[..., 1])
    cap = vmax[me][:, None]
    cand = cand * np.minimum(1.0, cap / np.maximum(sp, 1e-12))[..., None]
    # violation of each half-plane: det(direction, point - v) > 0
    diff = point[:, None, :, :] - cand[:, :, None, :]  # (B,C,K,2)
    viol = direction[:, None, :, 0] * diff[..., 1] - direction[:, None, :, 1] * diff[..., 0]
    viol = np.where(valid[:, None, :], viol, -np.inf).max(axis=2)  # (B,C)
    dev = np.hypot(*(cand - vp[:, None, :]).transpose(2, 0, 1))
    feasible = viol <= 1e-9
    cost = np.where(feasible, dev, 1e6 + viol)
    best = np.argmin(cost, axis=1)
    out[me] = cand[np.arange(len(me)), best]
    return out
