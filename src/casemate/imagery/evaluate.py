"""mAP50 with oriented IoU: per class (the model's leaf classes) and per DRI level.

Per level L, a ground-truth object counts only when the Johnson ceiling of its true size permits
L (others are "ignore": a prediction on them is neither right nor wrong), and a prediction counts
only when it claims level L, with the class and the score it claims there.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from casemate.imagery.datasets import load_dataset
from casemate.imagery.dri import LEVELS, DriPolicy, Hierarchy
from casemate.imagery.geometry import obb_corners, polygons
from casemate.imagery.pipeline import detect_raster
from casemate.imagery.runtime import Detector, load_detector


def average_precision(scores: list[float], matched: list[bool], n_gt: int) -> float:
    """VOC all-point interpolated AP."""
    if n_gt == 0:
        return float("nan")
    if not scores:
        return 0.0
    order = np.argsort(-np.asarray(scores), kind="stable")
    tp = np.asarray(matched, dtype=float)[order]
    ctp, cfp = np.cumsum(tp), np.cumsum(1 - tp)
    recall = ctp / n_gt
    precision = ctp / np.maximum(ctp + cfp, 1e-12)
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.concatenate([[0.0], precision, [0.0]])
    for i in range(len(mpre) - 2, -1, -1):
        mpre[i] = max(mpre[i], mpre[i + 1])
    idx = np.where(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[idx + 1] - mrec[idx]) * mpre[idx + 1]))


def _match(pred_polys, pred_scores, gt_polys, gt_ignore, iou_thr: float):
    """Greedy matching by score. Returns per prediction: True (TP), False (FP) or None (ignored)."""
    from casemate.imagery.geometry import iou_matrix

    out: list[bool | None] = []
    if len(pred_polys) == 0:
        return out
    ious = iou_matrix(pred_polys, gt_polys) if len(gt_polys) else np.zeros((len(pred_polys), 0))
    used = np.zeros(len(gt_polys), dtype=bool)
    res: dict[int, bool | None] = {}
    for i in np.argsort(-np.asarray(pred_scores), kind="stable"):
        best, bj = iou_thr, -1
        for j in range(len(gt_polys)):
            if not used[j] and ious[i, j] >= best:
                best, bj = ious[i, j], j
        if bj < 0:
            res[i] = False
        elif gt_ignore[bj]:
            res[i] = None
            used[bj] = True
        else:
            res[i] = True
            used[bj] = True
    return [res[i] for i in range(len(pred_polys))]


def evaluate(model: str | Path | Detector, data: str | Path, *, iou: float = 0.5, limit: int | None = None,
             tile: int | None = None) -> dict:
    det = model if hasattr(model, "detect") else load_detector(model)
    classes = det.classes
    hierarchy = Hierarchy.from_classes(classes)
    policy = DriPolicy.from_manifest(det.manifest)
    samples = load_dataset(Path(data), classes)[:limit]
    cls_acc: dict[int, list] = defaultdict(lambda: [[], [], 0])  # scores, matched, n_gt
    lvl_acc: dict[tuple[int, str], list] = defaultdict(lambda: [[], [], 0])
    for s in samples:
        res = detect_raster(s.image_path, det, gsd=s.gsd, tile=tile, workers=1)
        raw = res.raw
        gt_polys = polygons(np.stack([b.corners() for b in s.boxes])) if s.boxes else np.empty(0, object)
        gt_cls = np.array([b.cls for b in s.boxes], dtype=int)
        gt_diff = np.array([b.difficult for b in s.boxes], dtype=bool)
        pred_polys = polygons(obb_corners(raw.cx, raw.cy, raw.length, raw.width, raw.axis))
        for c in range(len(classes)):
            pm = raw.leaf == c
            gm = gt_cls == c
            scores = raw.leaf_scores[pm, c] if pm.any() else np.zeros(0)
            m = _match(pred_polys[pm], scores, gt_polys[gm], gt_diff[gm], iou)
            acc = cls_acc[c]
            for sc, ok in zip(scores, m, strict=True):
                if ok is not None:
                    acc[0].append(float(sc))
                    acc[1].append(ok)
            acc[2] += int((gm & ~gt_diff).sum())
        # Per DRI level, with the claims the pipeline actually reports.
        dets = res.detections
        for k in range(len(LEVELS)):
            gt_ceiling_ok = np.array([
                (policy.ceiling(b.width) is not None and LEVELS.index(policy.ceiling(b.width)) >= k
                 and len(hierarchy.leaves[b.cls]) > k) for b in s.boxes], dtype=bool)
            gt_node = [hierarchy.leaves[b.cls][k] if len(hierarchy.leaves[b.cls]) > k else None for b in s.boxes]
            claims = [(d, d.class_path[k]) for d in dets if len(d.class_path) > k]
            nodes = {n for n in gt_node if n} | {c["name"] for _, c in claims}
            for node in nodes:
                pi = [i for i, (_, c) in enumerate(claims) if c["name"] == node]
                gi = [j for j, n in enumerate(gt_node) if n == node]
                pp = polygons(np.array([claims[i][0].corners_px for i in pi])) if pi else np.empty(0, object)
                ps = [claims[i][1]["score"] for i in pi]
                ign = np.array([(not gt_ceiling_ok[j]) or gt_diff[j] for j in gi], dtype=bool)
                m = _match(pp, ps, gt_polys[gi] if gi else np.empty(0, object), ign, iou)
                acc = lvl_acc[(k, node)]
                for sc, ok in zip(ps, m, strict=True):
                    if ok is not None:
                        acc[0].append(sc)
                        acc[1].append(ok)
                acc[2] += int((~ign).sum())
    per_class = {}
    for c, name in enumerate(classes):
        sc, mt, n = cls_acc[c]
        ap = average_precision(sc, mt, n)
        per_class[name] = {"ap50": None if np.isnan(ap) else round(ap, 4), "gt": n, "predictions": len(sc)}
    valid = [v["ap50"] for v in per_class.values() if v["ap50"] is not None]
    per_level: dict = {}
    for k, level in enumerate(LEVELS):
        nodes = {}
        for (kk, node), (sc, mt, n) in lvl_acc.items():
            if kk != k:
                continue
            ap = average_precision(sc, mt, n)
            nodes[node] = {"ap50": None if np.isnan(ap) else round(ap, 4), "gt": n, "claims": len(sc)}
        aps = [v["ap50"] for v in nodes.values() if v["ap50"] is not None]
        per_level[level] = {"map50": round(float(np.mean(aps)), 4) if aps else None, "classes": nodes}
    return {"model": det.name, "digest": det.digest, "data": str(data), "images": len(samples),
            "iou": iou, "map50": round(float(np.mean(valid)), 4) if valid else 0.0,
            "per_class": per_class, "per_level": per_level}
