"""Merging detections across tile seams so that an object cut by a seam is reported once.

Two rules: (1) each tile keeps only the detections whose centre lies in its core (the tile with
the overlap split at its middle), so an object seen whole in two tiles is kept once; (2) a global
greedy NMS with oriented IoU and intersection-over-smaller-area removes what rule 1 misses (centres
estimated on either side of a core line, fragments of an object larger than the overlap).
"""

from __future__ import annotations

import numpy as np
import shapely

from casemate.imagery.geometry import iou_pairs

IOU_THRESHOLD = 0.4
IOS_THRESHOLD = 0.7


def nms_oriented(polys: np.ndarray, scores: np.ndarray, iou_threshold: float = IOU_THRESHOLD,
                 ios_threshold: float = IOS_THRESHOLD) -> np.ndarray:
    """Indices kept by greedy NMS, best score first."""
    n = len(polys)
    if n == 0:
        return np.empty(0, dtype=np.int64)
    order = np.argsort(-scores, kind="stable")
    tree = shapely.STRtree(polys)
    suppressed = np.zeros(n, dtype=bool)
    keep = []
    for i in order:
        if suppressed[i]:
            continue
        keep.append(i)
        cand = tree.query(polys[i], predicate="intersects")
        cand = cand[(cand != i) & ~suppressed[cand]]
        if len(cand) == 0:
            continue
        iou, ios = iou_pairs(np.repeat(polys[i:i + 1], len(cand)), polys[cand])
        suppressed[cand[(iou >= iou_threshold) | (ios >= ios_threshold)]] = True
    return np.asarray(keep, dtype=np.int64)
