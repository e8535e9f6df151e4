"""mAP50 with oriented IoU: per class (the model's leaf classes) and per DRI level.

Per level L, a ground-truth object counts only when the Johnson ceiling of its true size permits
L (others are "ignore": a prediction on them is neither right nor wrong), and a prediction counts
only when it claims level L, with the class and the score it claims there.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from casemate.imagery.datasets import UNKNOWN, Sample, load_dataset
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


def pr_curve(scores: list[float], matched: list[bool], n_gt: int, points: int = 21) -> list[dict]:
    """Precision and recall at score thresholds (for the figures)."""
    if not scores or n_gt == 0:
        return []
    sc = np.asarray(scores)
    ok = np.asarray(matched, dtype=bool)
    out = []
    for t in np.linspace(0.0, 0.95, points):
        sel = sc >= t
        tp = int((ok & sel).sum())
        n = int(sel.sum())
        out.append({"threshold": round(float(t), 3), "precision": round(tp / n, 4) if n else None,
                    "recall": round(tp / n_gt, 4)})
    return out


def _ious(pred_polys: np.ndarray, gt_polys: np.ndarray, gt_upright: np.ndarray) -> np.ndarray:
    """Oriented IoU; for upright-envelope labels, the IoU of the prediction's envelope with the label."""
    from casemate.imagery.geometry import iou_matrix

    if len(pred_polys) == 0 or len(gt_polys) == 0:
        return np.zeros((len(pred_polys), len(gt_polys)))
    ious = iou_matrix(pred_polys, gt_polys)
    if gt_upright.any():
        import shapely

        env = iou_matrix(shapely.envelope(pred_polys), gt_polys[gt_upright])
        ious[:, gt_upright] = env
    return ious


def _match(pred_polys, pred_scores, gt_polys, gt_ignore, iou_thr: float, gt_upright=None):
    """Greedy matching by score. Returns per prediction: True (TP), False (FP) or None (ignored)."""
    out: list[bool | None] = []
    if len(pred_polys) == 0:
        return out
    upright = np.zeros(len(gt_polys), dtype=bool) if gt_upright is None else np.asarray(gt_upright, dtype=bool)
    ious = _ious(pred_polys, gt_polys, upright)
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


def evaluate(model: str | Path | Detector, data: str | Path | list[Sample], *, iou: float = 0.5,
             limit: int | None = None, tile: int | None = None, gsd: float | None = None,
             names: list[str] | None = None, class_map: dict[str, str] | None = None,
             images: set[str] | None = None) -> dict:
    """AP50 per leaf class and per DRI level (each node of the taxonomy at that level), with the
    precision/recall curve at detection level.

    Labels naming a node above the leaves (a KIT "car" is vehicle/car, a "bus" just vehicle) count
    at the levels they name. Upright (YOLO) labels are scored with the IoU of the detection's
    envelope, oriented ones with oriented IoU; the result says which. `images`: only these stems
    (a held-out split); `gsd`: metres per pixel where the data does not say.
    """
    det = model if hasattr(model, "detect") else load_detector(model)
    classes = det.classes
    hierarchy = Hierarchy.from_classes(classes)
    policy = DriPolicy.from_manifest(det.manifest)
    samples = (list(data) if isinstance(data, list) else
               load_dataset(Path(data), classes, class_map=class_map, names=names, gsd=gsd))
    if images is not None:
        samples = [s for s in samples if s.image_path.stem in images]
    samples = samples[:limit]
    agnostic = any(b.path == UNKNOWN for s in samples for b in s.boxes)
    kinds = {("upright envelope" if b.axis_aligned else "oriented") for s in samples for b in s.boxes}
    cls_acc: dict[int, list] = defaultdict(lambda: [[], [], 0])  # scores, matched, n_gt
    lvl_acc: dict[tuple[int, str], list] = defaultdict(lambda: [[], [], 0])
    for s in samples:
        res = detect_raster(s.image_path, det, gsd=s.gsd, tile=tile, workers=1)
        raw = res.raw
        gt_polys = polygons(np.stack([b.corners() for b in s.boxes])) if s.boxes else np.empty(0, object)
        gt_cls = np.array([b.cls for b in s.boxes], dtype=int)
        gt_diff = np.array([b.difficult for b in s.boxes], dtype=bool)
        gt_up = np.array([b.axis_aligned for b in s.boxes], dtype=bool)
        gt_paths = [b.path or hierarchy.leaves[b.cls] for b in s.boxes]
        gt_leaf = np.array([len(p) == len(hierarchy.leaves[b.cls]) and p == hierarchy.leaves[b.cls]
                            for p, b in zip(gt_paths, s.boxes, strict=True)], dtype=bool)
        pred_polys = polygons(obb_corners(raw.cx, raw.cy, raw.length, raw.width, raw.axis))
        for c in range(len(classes)):
            pm = raw.leaf == c
            gm = (gt_cls == c) & gt_leaf
            scores = raw.leaf_scores[pm, c] if pm.any() else np.zeros(0)
            m = _match(pred_polys[pm], scores, gt_polys[gm], gt_diff[gm], iou, gt_up[gm])
            acc = cls_acc[c]
            for sc, ok in zip(scores, m, strict=True):
                if ok is not None:
                    acc[0].append(float(sc))
                    acc[1].append(ok)
            acc[2] += int((gm & ~gt_diff).sum())
        # Per DRI level, with the claims the pipeline actually reports.
        dets = res.detections
        for k in range(len(LEVELS)):
            if agnostic and k > 0:
                break
            gt_ceiling_ok = np.array([
                (policy.ceiling(_seen_width(b, res)) is not None
                 and LEVELS.index(policy.ceiling(_seen_width(b, res))) >= k) for b in s.boxes], dtype=bool)
            gt_node = [UNKNOWN[0] if agnostic else (p[k] if len(p) > k else None) for p in gt_paths]
            claims = [(d, d.class_path[k]) for d in dets if len(d.class_path) > k]
            claim_node = [UNKNOWN[0] if agnostic else c["name"] for _, c in claims]
            nodes = {n for n in gt_node if n} | set(claim_node)
            for node in nodes:
                pi = [i for i, n in enumerate(claim_node) if n == node]
                gi = [j for j, n in enumerate(gt_node) if n == node]
                # A label that names no node at this level (a bus at class level) is neither right nor wrong.
                gi_other = [j for j, n in enumerate(gt_node) if n is None]
                gsel = gi + gi_other
                pp = polygons(np.array([claims[i][0].corners_px for i in pi])) if pi else np.empty(0, object)
                ps = [claims[i][1]["score"] for i in pi]
                ign = np.array([(j in gi_other) or (not gt_ceiling_ok[j]) or gt_diff[j] for j in gsel], dtype=bool)
                m = _match(pp, ps, gt_polys[gsel] if gsel else np.empty(0, object), ign, iou,
                           gt_up[gsel] if gsel else None)
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
            if k == 0:
                nodes[node]["pr"] = pr_curve(sc, mt, n)
        aps = [v["ap50"] for v in nodes.values() if v["ap50"] is not None]
        per_level[level] = {"map50": round(float(np.mean(aps)), 4) if aps else None, "classes": nodes}
    iou_kind = ("envelope IoU (upright labels)" if kinds == {"upright envelope"} else
                "oriented IoU" if kinds <= {"oriented"} else "oriented IoU; envelope IoU for upright labels")
    notes = []
    if agnostic:
        notes.append("the data set gives no class names (no data.yaml, classes.txt or *.names): scored "
                     "class-agnostic at detection level only; give --names to map them")
    return {"model": det.name, "digest": det.digest, "data": str(data) if not isinstance(data, list) else "samples",
            "images": len(samples), "iou": iou, "iou_kind": iou_kind,
            "map50": round(float(np.mean(valid)), 4) if valid else None,
            "detection_ap50": per_level["D"]["map50"],
            "per_class": per_class, "per_level": per_level, "notes": notes}


def _seen_width(box: Sample | object, res) -> float:
    """A label's smaller side in the pixels the model saw (after resampling to its GSD)."""
    w = min(box.length, box.width)
    if box.axis_aligned:
        w = w * 0.9  # an envelope overstates the smaller side of a slanted object; a modest allowance
    return w / float(res.stats.get("resample_factor") or 1.0)
