"""Overlapping tiles and their cores: a detection belongs to the tile whose core holds its centre."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Tile:
    col: int  # window origin in raster pixels (may be negative for tiny rasters: never, kept >= 0)
    row: int
    size: int
    core: tuple[float, float, float, float]  # x0, y0, x1, y1 (raster px): half-open ownership region


def _starts(extent: int, size: int, step: int) -> list[int]:
    if extent <= size:
        return [0]
    starts = list(range(0, extent - size, step))
    starts.append(extent - size)  # last tile flush with the edge: no padding inside the raster
    return sorted(set(starts))


def _cores(starts: list[int], size: int, extent: int) -> list[tuple[float, float]]:
    """Split each overlap at its middle; the outer edges extend to infinity."""
    out = []
    for i, s in enumerate(starts):
        lo = -float("inf") if i == 0 else (starts[i - 1] + size + s) / 2
        hi = float("inf") if i == len(starts) - 1 else (s + size + starts[i + 1]) / 2
        out.append((lo, hi))
    return out


def make_tiles(width: int, height: int, size: int, overlap: int) -> list[Tile]:
    if overlap >= size:
        raise ValueError("tile overlap must be smaller than the tile")
    step = size - overlap
    xs, ys = _starts(width, size, step), _starts(height, size, step)
    cx, cy = _cores(xs, size, width), _cores(ys, size, height)
    return [Tile(x, y, size, (cx[i][0], cy[j][0], cx[i][1], cy[j][1]))
            for j, y in enumerate(ys) for i, x in enumerate(xs)]
