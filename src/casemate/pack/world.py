"""The world: an area polygon in local metres, terrain (land, water, obstacles) and no-go zones on a grid.

Terrain lives on a raster so that every "may a boat be here?" question over thousands of robots is one
array lookup, not a polygon test per robot.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage, sparse
from scipy.sparse.csgraph import dijkstra

OUTSIDE, LAND, WATER, OBSTACLE = 0, 1, 2, 3
DOMAINS: tuple[str, ...] = ("air", "ground", "surface")


def points_in_polygon(points: np.ndarray, poly: np.ndarray) -> np.ndarray:
    """Even-odd rule for many points against one polygon (V,2); vectorised over points."""
    x, y = points[:, 0], points[:, 1]
    inside = np.zeros(len(points), dtype=bool)
    xs, ys = poly[:, 0], poly[:, 1]
    xe, ye = np.roll(xs, -1), np.roll(ys, -1)
    for x1, y1, x2, y2 in zip(xs, ys, xe, ye, strict=True):
        crosses = (y1 > y) != (y2 > y)
        with np.errstate(divide="ignore", invalid="ignore"):
            xint = x1 + (y - y1) * (x2 - x1) / (y2 - y1)
        inside ^= crosses & (x < xint)
    return inside


@dataclass
class World:
    """Grid-backed world. `terrain[iy, ix]` is OUTSIDE/LAND/WATER/OBSTACLE; `nogo` is a boolean grid."""

    area: np.ndarray
    cell: float
    origin: np.ndarray
    terrain: np.ndarray
    nogo: np.ndarray
    allowed: dict[str, np.ndarray] = field(default_factory=dict)
    _dist: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict, repr=False)
    _graphs: dict[str, object] = field(default_factory=dict, repr=False)
    _labels: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    @classmethod
    def build(
        cls,
        area: np.ndarray,
        *,
        cell: float,
        default: str = "land",
        land: list[np.ndarray] = (),
        water: list[np.ndarray] = (),
        obstacles: list[np.ndarray] = (),
        nogo: list[np.ndarray] = (),
    ) -> World:
        area = np.asarray(area, dtype=np.float64)
        lo, hi = area.min(axis=0), area.max(axis=0)
        nx = max(1, int(np.ceil((hi[0] - lo[0]) / cell)))
        ny = max(1, int(np.ceil((hi[1] - lo[1]) / cell)))
        xs = lo[0] + (np.arange(nx) + 0.5) * cell
        ys = lo[1] + (np.arange(ny) + 0.5) * cell
        gx, gy = np.meshgrid(xs, ys)
        centres = np.column_stack([gx.ravel(), gy.ravel()])
        terrain = np.full(ny * nx, LAND if default == "land" else WATER, dtype=np.uint8)
        for poly in land:
            terrain[points_in_polygon(centres, poly)] = LAND
        for poly in water:
            terrain[points_in_polygon(centres, poly)] = WATER
        for poly in obstacles:
            terrain[points_in_polygon(centres, poly)] = OBSTACLE
        terrain[~points_in_polygon(centres, area)] = OUTSIDE
        ng = np.zeros(ny * nx, dtype=bool)
        for poly in nogo:
            ng |= points_in_polygon(centres, poly)
        world = cls(area=area, cell=float(cell), origin=lo, terrain=terrain.reshape(ny, nx), nogo=ng.reshape(ny, nx))
        world.allowed = {
            "air": (world.terrain != OUTSIDE) & ~world.nogo,
            "ground": (world.terrain == LAND) & ~world.nogo,
            "surface": (world.terrain == WATER) & ~world.nogo,
        }
        return world

    @property
    def shape(self) -> tuple[int, int]:
        return self.terrain.shape  # (ny, nx)

    @property
    def extent(self) -> tuple[float, float, float, float]:
        ny, nx = self.shape
        return (float(self.origin[0]), float(self.origin[1]), float(self.origin[0] + nx * self.cell),
                float(self.origin[1] + ny * self.cell))

    def cell_index(self, pos: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(iy, ix, inside_grid) for points (N,2)."""
        ij = np.floor((pos - self.origin) / self.cell).astype(np.int64)
        ny, nx = self.shape
        ix, iy = ij[:, 0], ij[:, 1]
        ok = (ix >= 0) & (ix < nx) & (iy >= 0) & (iy < ny)
        # np.clip's overhead outweighs the work on the small arrays this is called with
        return np.minimum(np.maximum(iy, 0), ny - 1), np.minimum(np.maximum(ix, 0), nx - 1), ok

    def centres(self) -> np.ndarray:
        """Cell centres (ny*nx, 2), row-major."""
        ny, nx = self.shape
        xs = self.origin[0] + (np.arange(nx) + 0.5) * self.cell
        ys = self.origin[1] + (np.arange(ny) + 0.5) * self.cell
        gx, gy = np.meshgrid(xs, ys)
        return np.column_stack([gx.ravel(), gy.ravel()])

    def inside_area(self, pos: np.ndarray) -> np.ndarray:
        return points_in_polygon(np.atleast_2d(pos), self.area)

    def allowed_at(self, domain_idx: np.ndarray, pos: np.ndarray) -> np.ndarray:
        """Whether each robot (domain index into DOMAINS) may be at its position."""
        iy, ix, ok = self.cell_index(pos)
        stack = self.allowed_stack
        return ok & stack[domain_idx, iy, ix]

    @property
    def allowed_stack(self) -> np.ndarray:
        stack = getattr(self, "_stack", None)
        if stack is None:
            stack = np.stack([self.allowed[d] for d in DOMAINS])
            self._stack = stack
        return stack

    def nearest_allowed(self, domain: str, pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For points (K,2): the nearest allowed cell centre for a domain and the distance to it (m)."""
        if domain not in self._dist:
            mask = self.allowed[domain]
            if not mask.any():
                dist = np.full(mask.shape, np.inf)
                idx = np.zeros((2,) + mask.shape, dtype=np.int64)
            else:
                dist, idx = ndimage.distance_transform_edt(~mask, return_indices=True)
            self._dist[domain] = (dist * self.cell, idx)
        dist, idx = self._dist[domain]
        iy, ix, _ = self.cell_index(np.atleast_2d(pos))
        ty, tx = idx[0, iy, ix], idx[1, iy, ix]
        centre = self.origin + (np.column_stack([tx, ty]) + 0.5) * self.cell
        return centre, dist[iy, ix]

    def components(self, domain: str) -> np.ndarray:
        """Connected regions of a domain's allowed cells (label per cell, 0 where not allowed): a robot
        can only ever reach cells of its own region."""
        if domain not in self._labels:
            self._labels[domain] = ndimage.label(self.allowed[domain])[0]
        return self._labels[domain]

    def travel_field(self, domain: str, goal_cell: int) -> np.ndarray:
        """Shortest travel distance (m) from every cell to the flat (row-major) cell `goal_cell` through
        the domain's allowed cells, moving to the 8 neighbours without cutting a blocked corner; inf
        where unreachable. Flat, row-major like centres()."""
        graph = self._graphs.get(domain)
        if graph is None:
            graph = self._graphs[domain] = self._grid_graph(self.allowed[domain])
        return dijkstra(graph, directed=False, indices=int(goal_cell))

    def flat_cell(self, pos: np.ndarray) -> np.ndarray:
        """Row-major cell index of each point (N,2), clipped to the grid."""
        iy, ix, _ = self.cell_index(pos)
        return iy * self.shape[1] + ix

    def _grid_graph(self, ok: np.ndarray) -> sparse.csr_matrix:
        ny, nx = ok.shape
        idx = np.arange(ny * nx).reshape(ny, nx)
        rows, cols, w = [], [], []
        c, d = self.cell, self.cell * np.sqrt(2.0)
        for dy, dx in ((0, 1), (1, 0), (1, 1), (1, -1)):
            a = ok[max(0, -dy): ny - max(0, dy), max(0, -dx): nx - max(0, dx)]
            ys, xs = np.nonzero(a)
            ys, xs = ys + max(0, -dy), xs + max(0, -dx)
            ty, tx = ys + dy, xs + dx
            keep = ok[ty, tx]
            if dy and dx:  # a diagonal step needs both cells it passes between
                keep &= ok[ys + dy, xs] & ok[ys, xs + dx]
            rows.append(idx[ys[keep], xs[keep]])
            cols.append(idx[ty[keep], tx[keep]])
            w.append(np.full(int(keep.sum()), d if dy and dx else c))
        r, k, v = np.concatenate(rows), np.concatenate(cols), np.concatenate(w)
        return sparse.csr_matrix((v, (r, k)), shape=(ny * nx, ny * nx))

    def clear_line(self, domain_idx: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Whether the straight segments a -> b (K,2) stay in allowed cells of each robot's domain
        (sampled every half cell)."""
        d = b - a
        length = np.hypot(d[:, 0], d[:, 1])
        n = np.maximum(1, np.ceil(length / (0.5 * self.cell)).astype(np.int64))
        s = int(n.max())
        frac = np.minimum(np.arange(s + 1)[None, :] / n[:, None], 1.0)  # (K, S+1): past the end, the end
        pts = a[:, None, :] + frac[:, :, None] * d[:, None, :]
        ok = self.allowed_at(np.repeat(domain_idx, s + 1), pts.reshape(-1, 2)).reshape(len(a), s + 1)
        return ok.all(axis=1)

    def route_step(self, field_: np.ndarray, pos: np.ndarray, steps: int = 3) -> np.ndarray:
        """The next `steps` cell centres (steps, K, 2) for robots at pos (K,2) going downhill on a travel
        field (8 neighbours, no corner cutting): the way around what blocks the straight line."""
        ny, nx = self.shape
        f = field_.reshape(ny, nx)
        iy, ix, _ = self.cell_index(pos)
        chain = []
        for _ in range(steps):
            best_v, by, bx = f[iy, ix], iy.copy(), ix.copy()
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    if dy == 0 and dx == 0:
                        continue
                    ty, tx = iy + dy, ix + dx
                    inside = (ty >= 0) & (ty < ny) & (tx >= 0) & (tx < nx)
                    ty, tx = np.clip(ty, 0, ny - 1), np.clip(tx, 0, nx - 1)
                    v = np.where(inside, f[ty, tx], np.inf)
                    if dy and dx:  # as the field was built: no cutting a blocked corner
                        v = np.where(np.isfinite(f[ty, ix]) & np.isfinite(f[iy, tx]), v, np.inf)
                    better = v < best_v
                    best_v, by, bx = np.where(better, v, best_v), np.where(better, ty, by), np.where(better, tx, bx)
            iy, ix = by, bx
            chain.append(self.origin + (np.column_stack([ix, iy]) + 0.5) * self.cell)
        return np.stack(chain)
