"""Scenario files (YAML): parsing and validation. Every mistake names its field; nothing runs on a bad file."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from casemate.errors import UsageError
from casemate.johnson import LEVELS
from casemate.pack.avoidance import AvoidanceConfig
from casemate.pack.comms import CommsConfig
from casemate.pack.failures import Cut, FailureConfig, Loss, NewTask
from casemate.pack.robots import BUILTIN_TYPES, TYPE_FIELDS, RobotType
from casemate.pack.scenario_model import ApprovalRule, validate_file
from casemate.pack.world import DOMAINS, World, points_in_polygon

SCENARIO_DIR = Path(__file__).parent / "scenarios"
EARTH_R = 6371000.0


@dataclass(frozen=True)
class RobotGroup:
    type: str
    count: int
    start: tuple[float, float]
    spread: float
    role: str  # "auto", "search", "surveil", "tasks"


@dataclass(frozen=True)
class Target:
    position: tuple[float, float]
    velocity: tuple[float, float] = (0.0, 0.0)
    size: float = 5.0
    level: str = "D"  # level a visit must reach
    value: float = 1.0
    visit: bool = True
    id: str = ""  # the name an operator approves or rejects it by ("" = its index)
    cls: str | None = None  # what the imagery thought it was
    detection: dict[str, Any] | None = None  # the stored detection it came from


@dataclass
class Scenario:
    name: str
    label: str
    description: str
    world: World
    types: dict[str, RobotType]
    groups: list[RobotGroup]
    targets: list[Target]
    comms: CommsConfig
    failures: FailureConfig
    avoidance: AvoidanceConfig
    objectives: dict[str, bool]
    duration: float
    dt: float
    bundle_size: int = 3
    source: str = ""
    raw: dict[str, Any] = field(default_factory=dict)
    approvals: list[ApprovalRule] = field(default_factory=list)
    approval_zones: list[np.ndarray | None] = field(default_factory=list)  # each rule's zone, projected
    lonlat_origin: tuple[float, float] | None = None  # (lon, lat) of the local frame's origin, for lonlat areas
    nogo_polygons: list[np.ndarray] = field(default_factory=list)  # in local metres (MAVLink fences)

    def from_lonlat(self, lonlat: Any) -> tuple[float, float]:
        """WGS84 lon/lat to the scenario's local metres (its own projection)."""
        if self.lonlat_origin is None:
            raise UsageError(f"scenario {self.source}: a local area has no lon/lat")
        lon0, lat0 = self.lonlat_origin
        k = math.cos(math.radians(lat0))
        return (math.radians(float(lonlat[0]) - lon0) * EARTH_R * k, math.radians(float(lonlat[1]) - lat0) * EARTH_R)

    def to_lonlat(self, xy: Any) -> tuple[float, float]:
        """Local metres back to WGS84 lon/lat (the inverse of the area's projection)."""
        if self.lonlat_origin is None:
            raise UsageError(f"scenario {self.source}: a local area has no lon/lat")
        lon0, lat0 = self.lonlat_origin
        x, y = float(xy[0]), float(xy[1])
        return (lon0 + math.degrees(x / (EARTH_R * math.cos(math.radians(lat0)))), lat0 + math.degrees(y / EARTH_R))

    @property
    def steps(self) -> int:
        return int(math.ceil(self.duration / self.dt))

    @property
    def robot_count(self) -> int:
        return sum(g.count for g in self.groups)


class _Ctx:
    """Field-path aware error raising: `where('robots[2].type')`."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, path: str, msg: str) -> UsageError:
        return UsageError(f"scenario {self.source}: {path}: {msg}")


def _num(ctx: _Ctx, path: str, v: Any, *, min_value: float | None = None, positive: bool = False) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(float(v)):
        raise ctx.fail(path, f"expected a number, got {v!r}")
    v = float(v)
    if positive and v <= 0:
        raise ctx.fail(path, f"must be positive, got {v:g}")
    if min_value is not None and v < min_value:
        raise ctx.fail(path, f"must be >= {min_value:g}, got {v:g}")
    return v


def _point(ctx: _Ctx, path: str, v: Any) -> tuple[float, float]:
    if not isinstance(v, (list, tuple)) or len(v) != 2:
        raise ctx.fail(path, f"expected a point [x, y], got {v!r}")
    return (_num(ctx, f"{path}[0]", v[0]), _num(ctx, f"{path}[1]", v[1]))


def _polygon(ctx: _Ctx, path: str, v: Any, proj: Any) -> np.ndarray:
    if not isinstance(v, (list, tuple)) or len(v) < 3:
        raise ctx.fail(path, "not a polygon: expected a list of at least 3 points [[x, y], ...]")
    pts = np.array([_point(ctx, f"{path}[{i}]", p) for i, p in enumerate(v)])
    if np.allclose(pts[0], pts[-1]) and len(pts) > 3:
        pts = pts[:-1]
    pts = proj(pts)
    area = 0.5 * abs(np.dot(pts[:, 0], np.roll(pts[:, 1], -1)) - np.dot(pts[:, 1], np.roll(pts[:, 0], -1)))
    if area <= 0:
        raise ctx.fail(path, "not a polygon: its points enclose no area")
    return pts


def _polys(ctx: _Ctx, path: str, v: Any, proj: Any) -> list[np.ndarray]:
    if v is None:
        return []
    if not isinstance(v, list):
        raise ctx.fail(path, "expected a list of polygons")
    return [_polygon(ctx, f"{path}[{i}]", p, proj) for i, p in enumerate(v)]


def _keys(ctx: _Ctx, path: str, d: Any, allowed: set[str]) -> dict[str, Any]:
    if d is None:
        return {}
    if not isinstance(d, dict):
        raise ctx.fail(path, f"expected a mapping, got {type(d).__name__}")
    return d  # unknown keys were refused by the model (scenario_model.validate_file)


def parse_scenario(data: Any, source: str = "<memory>", base_dir: Path | None = None) -> Scenario:
    """Validate a scenario mapping and build its world; raises UsageError naming the bad field."""
    ctx = _Ctx(source)
    spec = validate_file(data, source)  # the whole file's shape, once, before anything is built
    d = _keys(ctx, "", data, {"name", "label", "description", "area", "terrain", "no_go", "zones", "robot_types", "robots",
                              "targets", "comms", "failures", "objectives", "duration", "dt", "avoidance", "allocation"})
    name = str(d.get("name") or Path(source).stem)
    label = str(d.get("label", "NP"))
    try:
        from casemate.security import parse_label

        parse_label(label)
    except Exception as exc:  # a bad label is the user's to fix
        raise ctx.fail("label", f"not a valid label: {exc}") from None

    area_d = _keys(ctx, "area", d.get("area"), {"crs", "polygon"})
    if "polygon" not in area_d:
        raise ctx.fail("area.polygon", "missing: the search area as a polygon [[x, y], ...]")
    crs = area_d.get("crs", "local")
    if crs not in ("local", "lonlat"):
        raise ctx.fail("area.crs", f"must be 'local' (metres) or 'lonlat', got {crs!r}")
    proj = _projection(ctx, crs, area_d["polygon"])
    area = _polygon(ctx, "area.polygon", area_d["polygon"], proj)

    terr = _keys(ctx, "terrain", d.get("terrain"), {"cell", "default", "land", "water", "obstacles"})
    span = float(np.max(area.max(axis=0) - area.min(axis=0)))
    cell = _num(ctx, "terrain.cell", terr.get("cell", max(5.0, span / 200)), positive=True)
    if span / cell > 4000:
        raise ctx.fail("terrain.cell", f"{cell:g} m gives a grid over 4000 cells wide; use a coarser cell")
    default = terr.get("default", "land")
    if default not in ("land", "water"):
        raise ctx.fail("terrain.default", f"must be 'land' or 'water', got {default!r}")
    zones = {"land": _polys(ctx, "terrain.land", terr.get("land"), proj),
             "water": _polys(ctx, "terrain.water", terr.get("water"), proj),
             "obstacles": _polys(ctx, "terrain.obstacles", terr.get("obstacles"), proj),
             "no_go": _polys(ctx, "no_go", d.get("no_go"), proj)}
    for i, z in enumerate(spec.zones or []):
        zones[z.as_].extend(_geojson_polygons(ctx, f"zones[{i}].geojson", z.geojson, base_dir, proj))
    world = World.build(area, cell=cell, default=default, land=zones["land"], water=zones["water"],
                        obstacles=zones["obstacles"], nogo=zones["no_go"])

    types = dict(BUILTIN_TYPES)
    rt = d.get("robot_types") or {}
    if not isinstance(rt, dict):
        raise ctx.fail("robot_types", "expected a mapping name -> {base: TYPE, field: value}")
    for tname, spec in rt.items():
        p = f"robot_types.{tname}"
        spec = _keys(ctx, p, spec, set(TYPE_FIELDS) | {"base"})
        base_name = spec.get("base")
        if base_name is not None and base_name not in BUILTIN_TYPES:
            raise ctx.fail(f"{p}.base", f"unknown robot type {base_name!r} (known: {', '.join(sorted(BUILTIN_TYPES))})")
        base = BUILTIN_TYPES.get(base_name) if base_name else None
        if base is None and set(TYPE_FIELDS) - {"name"} - set(spec):
            missing = sorted(set(TYPE_FIELDS) - {"name"} - set(spec))[0]
            raise ctx.fail(f"{p}.{missing}", "missing (or give base: one of the built-in types)")
        vals = {} if base is None else {f: getattr(base, f) for f in TYPE_FIELDS}
        vals["name"] = str(tname)
        for f in TYPE_FIELDS:
            if f in ("name",) or f not in spec:
                continue
            if f == "domain":
                if spec[f] not in DOMAINS:
                    raise ctx.fail(f"{p}.domain", f"must be one of {', '.join(DOMAINS)}, got {spec[f]!r}")
                vals[f] = spec[f]
            else:
                vals[f] = _num(ctx, f"{p}.{f}", spec[f])
        for f in ("max_speed", "max_accel", "turn_rate", "endurance", "sensor_range", "ifov", "radio_range", "radius"):
            if vals[f] <= 0:
                raise ctx.fail(f"{p}.{f}", f"must be positive, got {vals[f]:g}")
        if not 0 <= vals["p_detect"] <= 1:
            raise ctx.fail(f"{p}.p_detect", f"must be between 0 and 1, got {vals['p_detect']:g}")
        types[str(tname)] = RobotType(**vals)

    robots = d.get("robots")
    if not isinstance(robots, list) or not robots:
        raise ctx.fail("robots", "missing: a list of {type, count, start}")
    groups = []
    for i, g in enumerate(robots):
        p = f"robots[{i}]"
        g = _keys(ctx, p, g, {"type", "count", "start", "spread", "role"})
        tname = g.get("type")
        if tname not in types:
            raise ctx.fail(f"{p}.type", f"unknown robot type {tname!r} (known: {', '.join(sorted(types))})")
        count = g.get("count", 1)
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ctx.fail(f"{p}.count", f"must be a whole number >= 1, got {count!r}")
        if "start" not in g:
            raise ctx.fail(f"{p}.start", "missing: the point [x, y] the robots start around")
        start = tuple(proj(np.array([_point(ctx, f"{p}.start", g["start"])]))[0])
        if not points_in_polygon(np.array([start]), area)[0]:
            raise ctx.fail(f"{p}.start", f"{list(g['start'])} is outside the area")
        spread = _num(ctx, f"{p}.spread", g.get("spread", 0.0), min_value=0)  # metres between robots; 0 = one cell
        role = g.get("role", "auto")
        if role not in ("auto", "search", "surveil", "tasks"):
            raise ctx.fail(f"{p}.role", f"must be auto, search, surveil or tasks, got {role!r}")
        groups.append(RobotGroup(str(tname), count, (float(start[0]), float(start[1])), spread, role))

    targets = []
    for i, t in enumerate(d.get("targets") or []):
        p = f"targets[{i}]"
        if isinstance(t, dict) and "geojson" in t:
            targets.extend(_geojson_targets(ctx, p, t, base_dir, proj, area))
            continue
        t = _keys(ctx, p, t, {"position", "velocity", "size", "level", "value", "visit", "id", "class", "detection"})
        if "position" not in t:
            raise ctx.fail(f"{p}.position", "missing: [x, y]")
        pos = tuple(proj(np.array([_point(ctx, f"{p}.position", t["position"])]))[0])
        if not points_in_polygon(np.array([pos]), area)[0]:
            raise ctx.fail(f"{p}.position", f"{list(t['position'])} is outside the area")
        vel = _point(ctx, f"{p}.velocity", t.get("velocity", [0, 0]))
        level = t.get("level", "D")
        if level not in LEVELS:
            raise ctx.fail(f"{p}.level", f"must be one of D, R, I, got {level!r}")
        targets.append(Target((float(pos[0]), float(pos[1])), vel, _num(ctx, f"{p}.size", t.get("size", 5.0), positive=True),
                              level, _num(ctx, f"{p}.value", t.get("value", 1.0), positive=True), bool(t.get("visit", True)),
                              str(t.get("id") or ""), t.get("class"), t.get("detection")))
    ids = [t.id or str(i) for i, t in enumerate(targets)]
    if len(set(ids)) != len(ids):
        dup = next(x for x in ids if ids.count(x) > 1)
        raise ctx.fail("targets", f"two targets are named {dup!r}: target ids must be unique")

    cm = _keys(ctx, "comms", d.get("comms"), {"model", "loss", "p_good_to_bad", "p_bad_to_good", "loss_good", "loss_bad",
                                              "latency", "period", "max_neighbours"})
    model = cm.get("model", "bernoulli")
    if model not in ("bernoulli", "gilbert_elliott"):
        raise ctx.fail("comms.model", f"must be bernoulli or gilbert_elliott, got {model!r}")
    ckw: dict[str, Any] = {"model": model}
    for f in ("loss", "p_good_to_bad", "p_bad_to_good", "loss_good", "loss_bad"):
        if f in cm:
            ckw[f] = _num(ctx, f"comms.{f}", cm[f], min_value=0)
            if ckw[f] > 1:
                raise ctx.fail(f"comms.{f}", f"is a probability: between 0 and 1, got {ckw[f]:g}")
    for f in ("latency", "period"):
        if f in cm:
            ckw[f] = _num(ctx, f"comms.{f}", cm[f], min_value=0)
    if "max_neighbours" in cm:
        mn = cm["max_neighbours"]
        if isinstance(mn, bool) or not isinstance(mn, int) or mn < 1:
            raise ctx.fail("comms.max_neighbours", f"must be a whole number >= 1, got {mn!r}")
        ckw["max_neighbours"] = mn
    comms = CommsConfig(**ckw)

    fd = _keys(ctx, "failures", d.get("failures"), {"lose", "random_rate", "cuts", "new_tasks"})
    n_total = sum(g.count for g in groups)
    losses = []
    for i, ev in enumerate(fd.get("lose") or []):
        p = f"failures.lose[{i}]"
        ev = _keys(ctx, p, ev, {"time", "robots", "fraction"})
        rids = tuple(int(r) for r in (ev.get("robots") or []))
        if any(r < 0 or r >= n_total for r in rids):
            raise ctx.fail(f"{p}.robots", f"robot numbers run from 0 to {n_total - 1}")
        frac = _num(ctx, f"{p}.fraction", ev.get("fraction", 0.0), min_value=0)
        if frac > 1:
            raise ctx.fail(f"{p}.fraction", "must be between 0 and 1")
        losses.append(Loss(_num(ctx, f"{p}.time", ev.get("time"), min_value=0), rids, frac))
    cuts = []
    for i, ev in enumerate(fd.get("cuts") or []):
        p = f"failures.cuts[{i}]"
        ev = _keys(ctx, p, ev, {"start", "end", "x", "y", "robots"})
        axis, value = ("x", ev["x"]) if "x" in ev else ("y", ev.get("y", 0.0))
        cuts.append(Cut(_num(ctx, f"{p}.start", ev.get("start"), min_value=0), _num(ctx, f"{p}.end", ev.get("end"), min_value=0),
                        axis, float(proj(np.array([[_num(ctx, f"{p}.{axis}", value), float(value)]]))[0][0 if axis == "x" else 1]),
                        tuple(int(r) for r in (ev.get("robots") or []))))
    new_tasks = []
    for i, ev in enumerate(fd.get("new_tasks") or []):
        p = f"failures.new_tasks[{i}]"
        ev = _keys(ctx, p, ev, {"time", "position", "level", "value", "size"})
        pos = tuple(proj(np.array([_point(ctx, f"{p}.position", ev.get("position"))]))[0])
        if not points_in_polygon(np.array([pos]), area)[0]:
            raise ctx.fail(f"{p}.position", f"{list(ev.get('position'))} is outside the area")
        level = ev.get("level", "D")
        if level not in LEVELS:
            raise ctx.fail(f"{p}.level", f"must be one of D, R, I, got {level!r}")
        new_tasks.append(NewTask(_num(ctx, f"{p}.time", ev.get("time"), min_value=0), (float(pos[0]), float(pos[1])), level,
                                 _num(ctx, f"{p}.value", ev.get("value", 1.0), positive=True),
                                 _num(ctx, f"{p}.size", ev.get("size", 5.0), positive=True)))
    failures = FailureConfig(losses, _num(ctx, "failures.random_rate", fd.get("random_rate", 0.0), min_value=0), cuts, new_tasks)

    od = _keys(ctx, "objectives", d.get("objectives"), {"search", "visit", "surveillance"})
    objectives = {k: bool(od.get(k, k != "surveillance")) for k in ("search", "visit", "surveillance")}
    av = _keys(ctx, "avoidance", d.get("avoidance"), {"horizon", "neighbours", "margin"})
    avoidance = replace(AvoidanceConfig(), **{k: (int(v) if k == "neighbours" else _num(ctx, f"avoidance.{k}", v, min_value=0))
                                              for k, v in av.items()})
    al = _keys(ctx, "allocation", d.get("allocation"), {"bundle_size"})
    bundle = al.get("bundle_size", 3)
    if isinstance(bundle, bool) or not isinstance(bundle, int) or bundle < 1:
        raise ctx.fail("allocation.bundle_size", f"must be a whole number >= 1, got {bundle!r}")
    duration = _num(ctx, "duration", d.get("duration", 600), positive=True)
    dt = _num(ctx, "dt", d.get("dt", 0.5), positive=True)
    rules = list(spec.approvals or [])
    approval_zones = [None if r.zone is None else _polygon(ctx, f"approvals[{i}].zone", r.zone, proj)
                      for i, r in enumerate(rules)]
    return Scenario(name, label, str(d.get("description", "")), world, types, groups, targets, comms, failures, avoidance,
                    objectives, duration, dt, bundle, source, d, rules, approval_zones, getattr(proj, "origin", None),
                    zones["no_go"])


def _projection(ctx: _Ctx, crs: str, poly: Any) -> Any:
    if crs == "local":
        return lambda pts: np.asarray(pts, dtype=np.float64)
    if not isinstance(poly, list) or not poly:
        raise ctx.fail("area.polygon", "not a polygon")
    ref = np.array([_point(ctx, f"area.polygon[{i}]", p) for i, p in enumerate(poly)]).mean(axis=0)
    lon0, lat0 = ref
    k = math.cos(math.radians(lat0))

    # local equirectangular metres around the area's centre: errors < 0.1% over tens of km
    def proj(pts: np.ndarray) -> np.ndarray:
        pts = np.asarray(pts, dtype=np.float64)
        return np.column_stack([np.radians(pts[:, 0] - lon0) * EARTH_R * k, np.radians(pts[:, 1] - lat0) * EARTH_R])

    proj.origin = (float(lon0), float(lat0))  # type: ignore[attr-defined]
    return proj


def _geojson_polygons(ctx: _Ctx, p: str, ref: str, base_dir: Path | None, proj: Any) -> list[np.ndarray]:
    """The exterior rings of a GeoJSON file's Polygons and MultiPolygons (lon/lat for lonlat areas, as
    RFC 7946 says; the area's own metres for local ones), projected like the area."""
    path = Path(ref)
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    try:
        gj = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ctx.fail(p, f"cannot read {path}: {exc}") from None
    feats = gj.get("features", []) if isinstance(gj, dict) and gj.get("type") == "FeatureCollection" else [gj]
    out = []
    for k, f in enumerate(feats):
        geom = (f or {}).get("geometry", f) or {}
        rings = ([geom.get("coordinates", [[]])[0]] if geom.get("type") == "Polygon" else
                 [poly[0] for poly in geom.get("coordinates", [])] if geom.get("type") == "MultiPolygon" else [])
        for r, ring in enumerate(rings):
            out.append(_polygon(ctx, f"{p}: features[{k}] ring {r}", [list(pt)[:2] for pt in ring], proj))
    if not out:
        raise ctx.fail(p, f"{path} holds no Polygon or MultiPolygon")
    return out


def _geojson_targets(ctx: _Ctx, p: str, t: dict[str, Any], base_dir: Path | None, proj: Any, area: np.ndarray) -> list[Target]:
    t = _keys(ctx, p, t, {"geojson", "level", "value", "size"})
    path = Path(str(t["geojson"]))
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    try:
        gj = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ctx.fail(f"{p}.geojson", f"cannot read {path}: {exc}") from None
    feats = gj.get("features", []) if isinstance(gj, dict) else []
    out = []
    for k, f in enumerate(feats):
        geom = (f or {}).get("geometry") or {}
        if geom.get("type") == "Point":
            xy = geom.get("coordinates", [])[:2]
        elif geom.get("type") == "Polygon":
            xy = list(np.array(geom["coordinates"][0], dtype=float)[:, :2].mean(axis=0))
        else:
            continue
        pos = proj(np.array([_point(ctx, f"{p}.geojson.features[{k}]", xy)]))[0]
        if points_in_polygon(np.array([pos]), area)[0]:
            out.append(Target((float(pos[0]), float(pos[1])), (0.0, 0.0), float(t.get("size", 5.0)), str(t.get("level", "D")),
                              float(t.get("value", 1.0))))
    return out


def load_scenario(name_or_path: str | Path) -> Scenario:
    """A scenario from a YAML file, or a built-in one by name."""
    path = Path(name_or_path)
    if not path.exists():
        builtin = SCENARIO_DIR / f"{name_or_path}.yaml"
        if builtin.exists():
            path = builtin
        else:
            raise UsageError(f"no scenario file or built-in scenario named {str(name_or_path)!r} "
                             f"(built-ins: {', '.join(builtin_names())})")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise UsageError(f"scenario {path}: not valid YAML: {exc}") from None
    except OSError as exc:
        raise UsageError(f"scenario {path}: cannot read: {exc}") from None
    except UnicodeDecodeError:
        raise UsageError(f"scenario {path}: not UTF-8 text: save the YAML file as UTF-8") from None
    return parse_scenario(data, str(path), path.parent)


def builtin_names() -> list[str]:
    return sorted(p.stem for p in SCENARIO_DIR.glob("*.yaml"))
