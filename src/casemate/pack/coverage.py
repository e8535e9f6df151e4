"""Area search and surveillance planning.

Search: the target cells of a domain are cut into vertical lanes one sensor swath wide; lanes are
shared out among the robots as contiguous blocks of about equal work (a strip decomposition), and
each robot sweeps its block boustrophedon (up one lane, down the next). Where a lane crosses ground
the robot may not enter, the path detours by breadth-first search on the grid. After losses the
uncovered cells are decomposed again among the survivors.

Surveillance: Lloyd's algorithm on a weighted Voronoi partition; the weight of a cell grows with the
time since it was last seen, so robots keep moving toward what is going stale.
"""

from __future__ import annotations

from collections import deque

import numpy as np
from scipy.spatial import cKDTree

from casemate.pack.world import World


def grid_path(allowed: np.ndarray, a: tuple[int, int], b: tuple[int, int]) -> list[tuple[int, int]]:
    """Shortest 8-connected path of cells (iy, ix) from a to b through allowed cells ([] if none)."""
    if a == b:
        return [a]
    ny, nx = allowed.shape
    prev = -np.ones(ny * nx, dtype=np.int64)
    start, goal = a[0] * nx + a[1], b[0] * nx + b[1]
    prev[start] = start
    q = deque([start])
    steps = ((1, 0), (-1, 0), (0, 1), (0, -1), (1, 1), (1, -1), (-1, 1), (-1, -1))
    while q:
        c = q.popleft()
        if c == goal:
            break
        cy, cx = divmod(c, nx)
        for dy, dx in steps:
            y, x = cy + dy, cx + dx
            if 0 <= y < ny and 0 <= x < nx and allowed[y, x]:
                k = y * nx + x
                if prev[k] < 0 and (dy == 0 or dx == 0 or (allowed[cy, x] and allowed[y, cx])):
                    prev[k] = c
                    q.append(k)
    if prev[goal] < 0:
        return []
    out = [goal]
    while out[-1] != start:
        out.append(int(prev[out[-1]]))
    return [divmod(c, nx) for c in reversed(out)]


def _lanes(world: World, target: np.ndarray, allowed: np.ndarray, swath: float) -> list[list[tuple[int, int]]]:
    """Per lane, the cells (iy, ix) along its centre line the robot visits, bottom to top."""
    ny, nx = world.shape
    width = max(1, int(round(swath / world.cell)))
    lanes = []
    for x0 in range(0, nx, width):
        band = target[:, x0:x0 + width]
        rows = np.flatnonzero(band.any(axis=1))
        if len(rows) == 0:
            continue
        cx = min(x0 + width // 2, nx - 1)
        cells = []
        for iy in range(rows[0], rows[-1] + 1):
            if allowed[iy, cx]:
                cells.append((iy, cx))
            else:
                # centre blocked: visit the nearest allowed cell of the band in this row, if any
                xs = np.flatnonzero(allowed[iy, x0:x0 + width])
                if len(xs):
                    cells.append((iy, x0 + int(xs[np.argmin(np.abs(xs + x0 - cx))])))
        if cells:
            lanes.append(cells)
    return lanes


def _split(work: np.ndarray, parts: int) -> list[tuple[int, int]]:
    """Contiguous blocks of lanes with about equal total work."""
    cum = np.cumsum(work)
    bounds = [0]
    for p in range(1, parts):
        bounds.append(int(np.searchsorted(cum, cum[-1] * p / parts)))
    bounds.append(len(work))
    bounds = np.maximum.accumulate(np.array(bounds))
    return [(int(bounds[i]), int(bounds[i + 1])) for i in range(parts)]


def _waypoints_from_cells(world: World, cells: list[tuple[int, int]], allowed: np.ndarray) -> np.ndarray:
    """Cell sequence -> waypoints (m), with grid detours wherever consecutive cells are not adjacent."""
    out: list[tuple[int, int]] = []
    for c in cells:
        if out and (abs(out[-1][0] - c[0]) > 1 or abs(out[-1][1] - c[1]) > 1):
            detour = grid_path(allowed, out[-1], c)
            out.extend(detour[1:-1])
        out.append(c)
    arr = np.array(out, dtype=np.float64).reshape(-1, 2)
    return world.origin + (arr[:, ::-1] + 0.5) * world.cell


def plan_search(world: World, target: np.ndarray, allowed: np.ndarray, robot_pos: np.ndarray, swath: float) -> list[np.ndarray]:
    """Boustrophedon waypoints (K_i,2) for each robot covering the target cells between them."""
    n = len(robot_pos)
    if n == 0:
        return []
    lanes = _lanes(world, target, allowed, swath)
    if not lanes:
        return [np.zeros((0, 2)) for _ in range(n)]
    work = np.array([len(lane) for lane in lanes], dtype=np.float64)
    blocks = _split(work, n)
    order = np.argsort(robot_pos[:, 0], kind="stable")  # robots west to east take blocks west to east
    plans: list[np.ndarray] = [np.zeros((0, 2)) for _ in range(n)]
    for rank, r in enumerate(order):
        lo, hi = blocks[rank]
        if hi <= lo:
            continue
        block = lanes[lo:hi]
        # start from whichever end of the block is closer to the robot
        first_lane = np.array(block[0][0])
        last_lane = np.array(block[-1][0])
        rc = (robot_pos[r] - world.origin) / world.cell
        if np.hypot(*(rc - first_lane[::-1])) > np.hypot(*(rc - last_lane[::-1])):
            block = block[::-1]
        cells: list[tuple[int, int]] = []
        up = True
        for lane in block:
            seq = lane if up else lane[::-1]
            # start the lane at the end nearer to where the previous one finished
            if cells and abs(seq[0][0] - cells[-1][0]) > abs(seq[-1][0] - cells[-1][0]):
                seq = seq[::-1]
            cells.extend(seq)
            up = seq[-1][0] <= seq[0][0]
        iy, ix, ok = world.cell_index(robot_pos[r:r + 1])
        start = [(int(iy[0]), int(ix[0]))] if ok[0] and allowed[iy[0], ix[0]] else []
        plans[r] = _waypoints_from_cells(world, start + cells, allowed)[len(start):]
    return plans


def lloyd_goals(world: World, cells_xy: np.ndarray, weight: np.ndarray, robot_pos: np.ndarray) -> np.ndarray:
    """One Lloyd step: the weighted centroid of each robot's Voronoi cell (its own position if empty)."""
    if len(robot_pos) == 0:
        return robot_pos
    owner = cKDTree(robot_pos).query(cells_xy, k=1)[1]
    w = np.bincount(owner, weights=weight, minlength=len(robot_pos))
    cx = np.bincount(owner, weights=weight * cells_xy[:, 0], minlength=len(robot_pos))
    cy = np.bincount(owner, weights=weight * cells_xy[:, 1], minlength=len(robot_pos))
    goals = robot_pos.copy()
    has = w > 0
    goals[has, 0] = cx[has] / w[has]
    goals[has, 1] = cy[has] / w[has]
    return goals
