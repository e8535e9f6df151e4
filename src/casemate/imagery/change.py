"""Change between two dates: which objects appeared, departed or moved, per class and per zone.

Objects are matched on the ground (metres, in a local azimuthal equidistant projection centred on
the scene), one to one per class, by minimum total distance (Hungarian assignment) within a gate:
- within `same_m` (default: half the object's length, at least 1.5 m): the same object, unchanged;
- within `move_m` (default: twice the length, at least 10 m): the same object, moved;
- otherwise: the old one departed and the new one appeared.
The class is the detection's category (its D-level claim: vehicle, ship, aircraft), which both dates
can always state; finer claims depend on each image's resolution.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from casemate.errors import UsageError

OUTSIDE = "(outside zones)"
ALL = "all"


@dataclass
class GroundObject:
    cls: str
    lon: float
    lat: float
    length_m: float | None
    ring: list  # exterior ring, lon/lat
    score: float
    props: dict = field(default_factory=dict)


@dataclass
class Zone:
    name: str
    geometry: object  # shapely geometry, lon/lat
    alert_threshold: int | None = None  # |after - before| of any class at or beyond this: alert
    alert_thresholds: dict[str, int] = field(default_factory=dict)  # per class


def objects_from_geojson(doc: dict, where: str = "detections") -> list[GroundObject]:
    """Detections as `detect` writes them (GeoJSON in WGS84)."""
    meta = doc.get("casemate") or {}
    if meta.get("coordinates") == "pixel":
        raise UsageError(f"{where}: detections are in image pixels (no georeferencing): change needs "
                         "georeferenced rasters")
    out = []
    for feat in doc.get("features") or []:
        props = feat.get("properties") or {}
        geom = feat.get("geometry") or {}
        if geom.get("type") != "Polygon":
            continue
        path = props.get("class_path") or []
        cls = path[0]["name"] if path else str(props.get("label") or "object").split(",")[0]
        ring = geom["coordinates"][0]
        lon, lat = props.get("centre_lonlat") or np.mean(np.asarray(ring[:-1]), axis=0).tolist()
        out.append(GroundObject(cls, float(lon), float(lat), props.get("length_m"), ring,
                                float(props.get("score") or 0.0), props))
    return out


def read_zones(path: Path, default_threshold: int | None = None) -> list[Zone]:
    """Zones: a GeoJSON FeatureCollection of (multi)polygons in WGS84 with properties `name` and,
    optionally, `alert_threshold` (an integer) or `alert_thresholds` ({class: integer})."""
    from shapely.geometry import shape

    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UsageError(f"--zones {path}: not readable GeoJSON ({exc})") from None
    feats = doc.get("features") if isinstance(doc, dict) else None
    if not isinstance(feats, list) or not feats:
        raise UsageError(f"--zones {path}: expected a FeatureCollection with at least one polygon")
    zones = []
    for i, feat in enumerate(feats):
        props = (feat or {}).get("properties") or {}
        name = str(props.get("name") or f"zone {i + 1}")
        try:
            geom = shape(feat["geometry"])
        except Exception:  # shapely raises several types for bad geometry
            raise UsageError(f"--zones {path}: feature {i + 1} ({name}) has no valid geometry") from None
        if geom.geom_type not in ("Polygon", "MultiPolygon"):
            raise UsageError(f"--zones {path}: feature {i + 1} ({name}) is a {geom.geom_type}, not a polygon")
        thr = props.get("alert_threshold", default_threshold)
        per = props.get("alert_thresholds") or {}
        if thr is not None and (not isinstance(thr, int) or thr < 1):
            raise UsageError(f"--zones {path}: feature {i + 1} ({name}): 'alert_threshold' must be a positive integer")
        if not isinstance(per, dict) or not all(isinstance(v, int) and v >= 1 for v in per.values()):
            raise UsageError(f"--zones {path}: feature {i + 1} ({name}): 'alert_thresholds' must map class -> "
                             "positive integer")
        zones.append(Zone(name, geom, thr, dict(per)))
    if len({z.name for z in zones}) != len(zones):
        raise UsageError(f"--zones {path}: zone names must be unique")
    return zones


def _local_xy(objs: list[GroundObject], lon0: float, lat0: float) -> np.ndarray:
    from pyproj import CRS, Transformer

    if not objs:
        return np.zeros((0, 2))
    aeqd = CRS.from_proj4(f"+proj=aeqd +lat_0={lat0} +lon_0={lon0} +datum=WGS84 +units=m")
    tr = Transformer.from_crs(CRS.from_epsg(4326), aeqd, always_xy=True)
    x, y = tr.transform([o.lon for o in objs], [o.lat for o in objs])
    return np.column_stack([np.asarray(x), np.asarray(y)])


def _zone_of(objs: list[GroundObject], zones: list[Zone]) -> list[str]:
    if not zones:
        return [ALL] * len(objs)
    import shapely

    pts = shapely.points([[o.lon, o.lat] for o in objs]) if objs else np.empty(0, object)
    out = [OUTSIDE] * len(objs)
    for z in reversed(zones):  # the first zone listed wins where zones overlap
        inside = shapely.contains(z.geometry, pts) if len(pts) else np.zeros(0, bool)
        for i in np.nonzero(inside)[0]:
            out[i] = z.name
    return out


@dataclass
class ChangeResult:
    changes: list[dict]  # one per appeared/departed/moved object
    summary: dict  # zone -> class -> {before, after, appeared, departed, moved, unchanged}
    alerts: list[dict]
    params: dict

    def to_geojson(self, meta: dict | None = None) -> dict:
        feats = []
        for c in self.changes:
            props = {k: v for k, v in c.items() if k not in ("ring", "from_ring")}
            feats.append({"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [c["ring"]]},
                          "properties": props})
        return {"type": "FeatureCollection",
                "casemate": {"kind": "change", "summary": self.summary, "alerts": self.alerts,
                             "params": self.params, **(meta or {})},
                "features": feats}


def compare(before: list[GroundObject], after: list[GroundObject], *, zones: list[Zone] | None = None,
            same_m: float | None = None, move_m: float | None = None, min_score: float = 0.0) -> ChangeResult:
    """Match the two dates' objects per class; count per zone and class; raise the zones' alerts."""
    from scipy.optimize import linear_sum_assignment

    zones = zones or []
    before = [o for o in before if o.score >= min_score]
    after = [o for o in after if o.score >= min_score]
    every = before + after
    if every:
        lon0 = float(np.mean([o.lon for o in every]))
        lat0 = float(np.mean([o.lat for o in every]))
    else:
        lon0 = lat0 = 0.0
    xb, xa = _local_xy(before, lon0, lat0), _local_xy(after, lon0, lat0)
    zb, za = _zone_of(before, zones), _zone_of(after, zones)
    names = [z.name for z in zones] + [OUTSIDE] if zones else [ALL]
    classes = sorted({o.cls for o in every})
    summary = {z: {c: {"before": 0, "after": 0, "appeared": 0, "departed": 0, "moved": 0, "unchanged": 0}
                   for c in classes} for z in names}
    changes: list[dict] = []

    def gates(o: GroundObject) -> tuple[float, float]:
        length = o.length_m or 5.0
        return (same_m if same_m is not None else max(1.5, 0.5 * length),
                move_m if move_m is not None else max(10.0, 2.0 * length))

    for c in classes:
        ib = [i for i, o in enumerate(before) if o.cls == c]
        ia = [j for j, o in enumerate(after) if o.cls == c]
        for i in ib:
            summary[zb[i]][c]["before"] += 1
        for j in ia:
            summary[za[j]][c]["after"] += 1
        matched_b, matched_a = set(), set()
        if ib and ia:
            d = np.linalg.norm(xb[ib][:, None, :] - xa[ia][None, :, :], axis=2)
            gate = np.array([[max(gates(before[i])[1], gates(after[j])[1]) for j in ia] for i in ib])
            cost = np.where(d <= gate, d, 1e9)
            rows, cols = linear_sum_assignment(cost)
            for r, k in zip(rows, cols, strict=True):
                if cost[r, k] >= 1e9:
                    continue
                i, j = ib[r], ia[k]
                matched_b.add(i)
                matched_a.add(j)
                same = max(gates(before[i])[0], gates(after[j])[0])
                if d[r, k] <= same:
                    summary[za[j]][c]["unchanged"] += 1
                    continue
                summary[za[j]][c]["moved"] += 1
                changes.append({"change": "moved", "class": c, "zone": za[j], "from_zone": zb[i],
                                "distance_m": round(float(d[r, k]), 2), "ring": after[j].ring,
                                "lonlat": [after[j].lon, after[j].lat], "from_lonlat": [before[i].lon, before[i].lat],
                                "score": after[j].score, "from_score": before[i].score})
        for i in ib:
            if i not in matched_b:
                summary[zb[i]][c]["departed"] += 1
                changes.append({"change": "departed", "class": c, "zone": zb[i], "ring": before[i].ring,
                                "lonlat": [before[i].lon, before[i].lat], "score": before[i].score})
        for j in ia:
            if j not in matched_a:
                summary[za[j]][c]["appeared"] += 1
                changes.append({"change": "appeared", "class": c, "zone": za[j], "ring": after[j].ring,
                                "lonlat": [after[j].lon, after[j].lat], "score": after[j].score})
    alerts = []
    for z in zones:
        for c in classes:
            s = summary[z.name][c]
            delta = s["after"] - s["before"]
            thr = z.alert_thresholds.get(c, z.alert_threshold)
            if thr is not None and abs(delta) >= thr:
                alerts.append({"zone": z.name, "class": c, "before": s["before"], "after": s["after"],
                               "delta": delta, "threshold": thr})
    params = {"same_m": same_m if same_m is not None else "max(1.5, 0.5 x length)",
              "move_m": move_m if move_m is not None else "max(10, 2 x length)", "min_score": min_score,
              "matching": "one to one per category, minimum total ground distance (Hungarian), local AEQD metres"}
    return ChangeResult(changes, summary, alerts, params)


def summary_rows(summary: dict) -> list[tuple]:
    """(zone, class, before, after, appeared, departed, moved) rows with anything in them."""
    rows = []
    for z, per in summary.items():
        for c, s in per.items():
            if any(s.values()):
                rows.append((z, c, s["before"], s["after"], s["appeared"], s["departed"], s["moved"]))
    return rows
