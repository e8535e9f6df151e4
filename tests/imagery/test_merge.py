"""Seams: an object cut by a tile border is reported exactly once after merging."""

from __future__ import annotations

import numpy as np
import shapely

from casemate.imagery.geometry import obb_corners, polygons
from casemate.imagery.merge import nms_oriented
from casemate.imagery.pipeline import _own
from casemate.imagery.runtime import RawBoxes
from casemate.imagery.tiling import make_tiles


def simulate_tile_detector(gt: np.ndarray, tile, rng: np.random.Generator) -> RawBoxes:
    """What a detector sees in a tile: whole objects with small jitter, cut objects as the visible part."""
    x0, y0 = tile.col, tile.row
    win = shapely.box(x0, y0, x0 + tile.size, y0 + tile.size)
    polys = polygons(obb_corners(gt[:, 0], gt[:, 1], gt[:, 2], gt[:, 3], gt[:, 4]))
    rows = []
    for i, p in enumerate(polys):
        inter = p.intersection(win)
        if inter.is_empty or inter.area < 0.05 * p.area:
            continue
        frac = inter.area / p.area
        if frac > 0.98:
            L0 = gt[i][2]  # localisation noise proportional to size, as a detector's
            cx, cy, L, W, a = gt[i] + rng.normal(0, [0.03 * L0, 0.03 * L0, 0.03 * L0, 0.015 * L0, 0.02])
            rows.append((cx - x0, cy - y0, L, W, a, 0.9))
        else:  # the visible fragment, detected with lower confidence
            rect = np.asarray(inter.minimum_rotated_rectangle.exterior.coords)[:4]
            e1, e2 = rect[1] - rect[0], rect[2] - rect[1]
            L, W = max(np.hypot(*e1), np.hypot(*e2)), min(np.hypot(*e1), np.hypot(*e2))
            a = np.arctan2(*(e1 if np.hypot(*e1) >= np.hypot(*e2) else e2)[::-1])
            c = rect.mean(axis=0)
            rows.append((c[0] - x0, c[1] - y0, L, W, a, 0.5 * frac + 0.2))
    if not rows:
        return RawBoxes.empty(1)
    r = np.array(rows)
    return RawBoxes(r[:, 0], r[:, 1], r[:, 2], r[:, 3], r[:, 4], r[:, 4], r[:, 5],
                    np.zeros(len(r), dtype=np.int64), r[:, 5:6])


def dense_scene(rng: np.random.Generator, size: int, n: int) -> np.ndarray:
    """Non-overlapping oriented objects from 8 to 90 px long."""
    out: list[tuple] = []
    while len(out) < n:
        L = float(rng.choice([rng.uniform(8, 20), rng.uniform(20, 90)]))
        W = L * rng.uniform(0.3, 0.6)
        cx, cy = rng.uniform(L, size - L, 2)
        if all(np.hypot(cx - o[0], cy - o[1]) > (L + o[2]) * 0.6 for o in out):
            out.append((cx, cy, L, W, rng.uniform(0, np.pi)))
    return np.array(out)


def seam_once_rate(seed: int = 0, size: int = 2048, n: int = 900, tile: int = 512, overlap: int = 128):
    rng = np.random.default_rng(seed)
    gt = dense_scene(rng, size, n)
    tiles = make_tiles(size, size, tile, overlap)
    parts = [_own(simulate_tile_detector(gt, t, rng), t, overlap / 4) for t in tiles]
    cat = {f: np.concatenate([getattr(p, f) for p in parts]) for f in ("cx", "cy", "length", "width", "axis", "score")}
    polys = polygons(obb_corners(cat["cx"], cat["cy"], cat["length"], cat["width"], cat["axis"]))
    keep = nms_oriented(polys, cat["score"])
    kept = polys[keep]
    gt_polys = polygons(obb_corners(gt[:, 0], gt[:, 1], gt[:, 2], gt[:, 3], gt[:, 4]))
    # An object is "on a seam" when it crosses a tile border inside the raster.
    borders = shapely.union_all([shapely.box(t.col, t.row, t.col + t.size, t.row + t.size).boundary for t in tiles])
    on_seam = shapely.intersects(gt_polys, borders)
    tree = shapely.STRtree(kept)
    counts = np.zeros(len(gt), dtype=int)
    for i, g in enumerate(gt_polys):
        cand = tree.query(g, predicate="intersects")
        inter = shapely.area(shapely.intersection(kept[cand], g))
        union = shapely.area(kept[cand]) + g.area - inter
        counts[i] = int((inter / union >= 0.5).sum())
    seam = counts[on_seam]
    return float((seam == 1).mean()), int(on_seam.sum()), len(kept), len(gt)


def test_tiles_cover_and_cores_partition() -> None:
    tiles = make_tiles(1300, 700, 512, 128)
    pts = np.random.default_rng(1).uniform([0, 0], [1300, 700], (2000, 2))
    owners = [sum(t.core[0] <= x < t.core[2] and t.core[1] <= y < t.core[3] for t in tiles) for x, y in pts]
    assert set(owners) == {1}
    assert all(t.col + t.size <= 1300 and t.row + t.size <= 700 for t in tiles)


def test_small_raster_is_one_tile() -> None:
    assert len(make_tiles(100, 80, 512, 128)) == 1


def test_objects_on_seams_reported_once() -> None:
    rate, n_seam, n_kept, n_gt = seam_once_rate(seed=0, size=1536, n=500)
    assert n_seam >= 50
    assert rate >= 0.99, (rate, n_seam)
    assert abs(n_kept - n_gt) <= 0.01 * n_gt


def test_nms_keeps_distinct_neighbours() -> None:
    c = obb_corners(np.array([10.0, 10.5, 30.0]), np.array([10.0, 10.2, 10.0]), np.array([12.0, 12, 12]),
                    np.array([4.0, 4, 4]), np.array([0.0, 0.05, 0.0]))
    keep = nms_oriented(polygons(c), np.array([0.9, 0.8, 0.7]))
    assert sorted(keep.tolist()) == [0, 2]
