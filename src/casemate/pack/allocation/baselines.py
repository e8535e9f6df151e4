"""Centralised baselines: the optimum for one task per robot (Hungarian), a small multi-task MILP, greedy."""

from __future__ import annotations

import numpy as np
from scipy.optimize import Bounds, LinearConstraint, linear_sum_assignment, milp
from scipy.sparse import coo_matrix

from casemate.errors import UsageError


def hungarian(score: np.ndarray) -> tuple[np.ndarray, float]:
    """Optimal one-task-per-robot assignment maximising total score: (task per agent or -1, total)."""
    rows, cols = linear_sum_assignment(-score)
    out = np.full(score.shape[0], -1, dtype=np.int64)
    keep = score[rows, cols] > 0
    out[rows[keep]] = cols[keep]
    return out, float(score[rows[keep], cols[keep]].sum())


def greedy_assignment(score: np.ndarray) -> tuple[np.ndarray, float]:
    """Sequential greedy, one task per robot: repeatedly take the best remaining (robot, task) pair."""
    s = np.where(score > 0, score, -np.inf).astype(np.float64)
    out = np.full(s.shape[0], -1, dtype=np.int64)
    total = 0.0
    for _ in range(min(s.shape)):
        flat = int(np.argmax(s))
        i, j = divmod(flat, s.shape[1])
        if not np.isfinite(s[i, j]):
            break
        out[i] = j
        total += float(score[i, j])
        s[i, :] = -np.inf
        s[:, j] = -np.inf
    return out, total


def sequential_greedy(score: np.ndarray, capacity: int) -> tuple[list[list[int]], float]:
    """Sequential greedy with additive scores and up to `capacity` tasks per robot."""
    s = np.where(score > 0, score, -np.inf).astype(np.float64)
    load = np.zeros(s.shape[0], dtype=np.int64)
    out: list[list[int]] = [[] for _ in range(s.shape[0])]
    total = 0.0
    while True:
        flat = int(np.argmax(s))
        i, j = divmod(flat, s.shape[1])
        if not np.isfinite(s[i, j]):
            break
        out[i].append(j)
        total += float(score[i, j])
        load[i] += 1
        s[:, j] = -np.inf
        if load[i] >= capacity:
            s[i, :] = -np.inf
    return out, total


def milp_multi(score: np.ndarray, cost: np.ndarray, budget: np.ndarray, capacity: int,
               time_limit: float = 30.0) -> tuple[list[list[int]], float]:
    """Exact small multi-task allocation with SciPy's MILP (HiGHS).

    Maximise the total score with each task done at most once, each robot taking at most `capacity`
    tasks and spending at most its budget (e.g. endurance) on them: a knapsack per robot, which is
    why greedy is not optimal here. Meant for small instances (tens of robots and tasks).
    """
    n, m = score.shape
    if n * m > 20000:
        raise UsageError(f"milp_multi: {n}x{m} is too large for the exact baseline (keep n*m <= 20000)")
    c = -score.ravel()
    var = np.arange(n * m)
    ai, aj = np.divmod(var, m)
    task_rows = coo_matrix((np.ones(n * m), (aj, var)), shape=(m, n * m))
    cap_rows = coo_matrix((np.ones(n * m), (ai, var)), shape=(n, n * m))
    bud_rows = coo_matrix((cost.ravel(), (ai, var)), shape=(n, n * m))
    cons = [
        LinearConstraint(task_rows, -np.inf, 1),
        LinearConstraint(cap_rows, -np.inf, capacity),
        LinearConstraint(bud_rows, -np.inf, budget),
    ]
    ub = (score.ravel() > 0).astype(float)
    res = milp(c, constraints=cons, integrality=np.ones(n * m), bounds=Bounds(0, ub),
               options={"time_limit": time_limit})
    if res.x is None:
        raise UsageError(f"milp_multi: solver found no solution ({res.message})")
    x = np.round(res.x).reshape(n, m).astype(bool)
    out = [list(np.flatnonzero(x[i])) for i in range(n)]
    return out, float(score[x].sum())
