"""The world: an area polygon in local metres, terrain (land, water, obstacles) and no-go zones on a grid.

Terrain lives on a raster so that every "may a boat be here?" question over thousands of robots is one
array lookup, not a polygon test per robot.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

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
        ok = (ij[:, 0] >= 0) & (ij[:, 0] < nx) & (ij[:, 1] >= 0) & (ij[:, 1] < ny)
        return np.clip(ij[:, 1], 0, ny - 1), np.clip(ij[:, 0], 0, nx - 1), ok

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
