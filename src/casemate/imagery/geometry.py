"""Oriented boxes: corners, polygons and oriented IoU (shapely 2, vectorised)."""

from __future__ import annotations

import numpy as np
import shapely


def obb_corners(cx: np.ndarray, cy: np.ndarray, length: np.ndarray, width: np.ndarray,
                angle: np.ndarray) -> np.ndarray:
    """(n, 4, 2) corners of oriented boxes; angle (radians) is the direction of the length axis."""
    cx, cy, length, width, angle = (np.atleast_1d(np.asarray(v, dtype=np.float64))
                                    for v in (cx, cy, length, width, angle))
    c, s = np.cos(angle), np.sin(angle)
    hl, hw = length / 2, width / 2
    lx = np.stack([hl, hl, -hl, -hl], axis=1)
    ly = np.stack([-hw, hw, hw, -hw], axis=1)
    x = cx[:, None] + lx * c[:, None] - ly * s[:, None]
    y = cy[:, None] + lx * s[:, None] + ly * c[:, None]
    return np.stack([x, y], axis=2)


def polygons(corners: np.ndarray) -> np.ndarray:
    """(n, 4, 2) corners -> array of shapely Polygons."""
    corners = np.asarray(corners, dtype=np.float64)
    if len(corners) == 0:
        return np.empty(0, dtype=object)
    ring = np.concatenate([corners, corners[:, :1]], axis=1)
    return shapely.polygons(ring)


def iou_pairs(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Element-wise (IoU, intersection over the smaller area) of two polygon arrays."""
    inter = shapely.area(shapely.intersection(a, b))
    aa, ab = shapely.area(a), shapely.area(b)
    union = aa + ab - inter
    iou = np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)
    ios = np.where(np.minimum(aa, ab) > 0, inter / np.maximum(np.minimum(aa, ab), 1e-12), 0.0)
    return iou, ios


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) oriented IoU, computed only for pairs whose envelopes meet."""
    out = np.zeros((len(a), len(b)))
    if len(a) == 0 or len(b) == 0:
        return out
    tree = shapely.STRtree(b)
    ia, ib = tree.query(a, predicate="intersects")
    if len(ia):
        iou, _ = iou_pairs(a[ia], b[ib])
        out[ia, ib] = iou
    return out
