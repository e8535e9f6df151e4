"""The pack as library functions: what the CLI and the HTTP API call.

Each validates all of its input first (scenario or mission, label, output folder, decision), then
runs, then stores; a mistake stores nothing. The pack meets the rest of the platform only through
the catalog: detections come in as `detections` versions (a GeoJSON FeatureCollection in WGS84),
missions, results, replays and findings go out as versions derived from them.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from casemate.errors import CasemateError, NotFound, PermissionDenied, UsageError
from casemate.fileutil import write_atomic
from casemate.johnson import LEVELS
from casemate.pack.approvals import Decision, marked_tasks, target_ids
from casemate.pack.metrics import RunResult
from casemate.pack.replay import write_outputs
from casemate.pack.robots import BUILTIN_TYPES
from casemate.pack.scenario import SCENARIO_DIR, Scenario, load_scenario, parse_scenario
from casemate.security.labels import format_label, parse_label

if TYPE_CHECKING:
    from casemate.catalog.service import Version
    from casemate.security.policy import User
    from casemate.workspace import Workspace

DECISIONS = ("approve", "reject")
_PAST = {"approve": "approved", "reject": "rejected"}


@dataclass
class RunOutcome:
    scenario: Scenario
    result: RunResult
    paths: dict[str, Path]
    label: str
    plan: Version | None = None
    results: Version | None = None
    replay: Version | None = None
    findings: list[Version] = field(default_factory=list)
    detections: list[Version] = field(default_factory=list)  # new versions: seen at a better level


@dataclass
class PlanOutcome:
    mission: Version
    scenario: Scenario
    tasks: list[dict[str, Any]]  # id, class, wanted level, the detection's level, marked


# ---------------------------------------------------------------------------------------- missions
def load_mission(ws: Workspace | None, user: User | None, ref: str | Path) -> tuple[Scenario, Version | None]:
    """A scenario file, a built-in name, or (with a workspace) a stored mission plan's version id."""
    path = Path(ref)
    if ws is None or path.exists() or (SCENARIO_DIR / f"{ref}.yaml").exists():
        return load_scenario(ref), None
    assert user is not None
    try:
        v = ws.catalog.get(user, str(ref))
    except NotFound:
        # hidden looks exactly like missing; the message says what else the name could have been
        err = NotFound(str(ref))
        err.message = f"no scenario file, built-in scenario or mission version named {str(ref)!r}"
        err.args = (err.message,)
        raise err from None
    if v.kind != "mission" or v.metadata.get("role") != "plan":
        raise UsageError(f"{v.id} is a {v.kind} version ({v.metadata.get('role', 'no role')}), not a mission plan")
    try:
        data = yaml.safe_load(ws.catalog.read_bytes(user, v.id))
    except yaml.YAMLError as exc:
        raise UsageError(f"mission {v.id}: not valid YAML: {exc}") from None
    return parse_scenario(data, f"mission {v.id}"), v


def decisions_for(ws: Workspace, user: User, mission: Version) -> list[Decision]:
    """The officers' decisions on a mission's marked tasks, oldest first (one per task)."""
    out = []
    for c in ws.catalog.children(user, mission.id, kind="mission"):
        m = c.metadata
        if m.get("role") == "decision":
            out.append(Decision(str(m["task"]), str(m["decision"]), 0.0, c.created_by, str(m.get("reason", ""))))
    return out


def _check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out}: exists and is not a folder")
    probe = out
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise UsageError(f"--out {out}: cannot write under {probe}")


class LiveDecisions:
    """The decisions officers store while a stored mission runs (CLI, API, another process), handed to
    the simulation between steps: each reaches the robots at the simulated time it is read, and the
    run's decision log says when (a later run with `Decision(at=t)` replays it exactly)."""

    def __init__(self, ws: Workspace, user: User, plan: Version, sc: Scenario, known: list[Decision],
                 every_s: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.ws, self.user, self.plan = ws, user, plan
        self.open = set(marked_tasks(sc)) - {d.task for d in known}  # marked tasks still undecided
        self.every_s = every_s
        self.clock = clock
        self._last = clock()
        self.applied: list[Decision] = []

    def poll(self, sim: Any, force: bool = False) -> int:
        """Read the stored decisions (at most every `every_s` of wall time) and hand the new ones to the
        simulation, now; returns how many."""
        if not self.open or (not force and self.clock() - self._last < self.every_s):
            return 0
        self._last = self.clock()
        new = [d for d in decisions_for(self.ws, self.user, self.plan) if d.task in self.open]
        for d in new:
            self.open.discard(d.task)
            d = replace(d, at=sim.t)
            sim.decide(d)
            self.applied.append(d)
        return len(new)


def run_scenario(ws: Workspace | None, user: User | None, scenario_ref: str | Path, *, seed: int = 0,
                 out_dir: str | Path | None = None, label: str | None = None,
                 progress: Callable[[int], None] | None = None, start: Callable[[Scenario], None] | None = None,
                 pace: float | None = None, poll_s: float = 1.0) -> RunOutcome:
    """Run a scenario or a stored mission to the end; write its outputs; with a workspace, store the plan
    (unless it is already a stored mission), the results, the replay and the findings, all in one
    transaction (a failure while storing leaves none of them).

    `label` may raise the outputs' label above the scenario's (never lower it). `start(scenario)` is
    called once everything is validated, just before the run (a face shows a progress bar there).
    A stored mission with tasks still waiting for an officer reads the decisions stored meanwhile every
    `poll_s` seconds of wall time and applies them at once. `pace` (simulated seconds per wall second)
    holds the run to that speed, so that a person can follow it and decide while it runs.
    """
    if pace is not None and not (pace > 0 and math.isfinite(pace)):
        raise UsageError(f"--pace {pace}: must be a positive number of simulated seconds per second")
    if not (poll_s > 0 and math.isfinite(poll_s)):
        raise UsageError(f"--poll {poll_s}: must be a positive number of seconds")
    sc, plan = load_mission(ws, user, scenario_ref)
    out = Path(out_dir) if out_dir else Path("pack-runs") / f"{sc.name}-seed{seed}"
    _check_out(out)
    final = label or (format_label(plan.label) if plan is not None else sc.label)
    decisions: list[Decision] = []
    if label is not None:
        try:
            lab = parse_label(label)
        except CasemateError:
            raise
        except Exception as exc:  # a bad label is the user's to fix
            raise UsageError(f"--label {label!r}: not a valid label: {exc}") from None
        if not lab.dominates(parse_label(sc.label)):
            raise UsageError(f"--label {label} is below the scenario's label {sc.label}: outputs carry at least its label")
    if ws is not None:
        assert user is not None
        try:
            ws.catalog.check_label(user, final, [plan.id] if plan is not None else [])
        except UsageError as exc:
            raise UsageError(f"scenario {sc.source}: {exc.message}; nothing was run") from None
        if plan is not None:
            decisions = decisions_for(ws, user, plan)
    from casemate.pack.sim import Simulation  # the heavy part, only once the input is known good

    raster = mission_raster(ws, user, sc, plan) if ws is not None and user is not None else None
    live = None
    if ws is not None and user is not None and plan is not None:
        live = LiveDecisions(ws, user, plan, sc, decisions, poll_s)
        if not live.open:
            live = None
    if start is not None:
        start(sc)  # from here on, a decision stored is one taken during the run
    began = time.monotonic()

    def between_steps(sim: Any) -> None:
        if pace is not None:
            ahead = began + sim.t / pace - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
        if live is not None:
            live.poll(sim)

    hook = between_steps if (live is not None or pace is not None) else None
    result = Simulation(sc, seed, decisions=decisions).run(progress, between=hook)
    paths = write_outputs(result, out, raster)
    found = findings_of(sc, result)
    if sc.lonlat_origin is not None:
        paths["findings"] = out / "findings.geojson"
        write_atomic(paths["findings"], json.dumps(findings_geojson(found), indent=1) + "\n")
    outcome = RunOutcome(sc, result, paths, final)
    if ws is not None:
        assert user is not None
        with ws.transaction():  # plan, results, replay, findings, new detections: all or none
            _store(ws, user, sc, seed, final, plan, result, paths, found, outcome)
    return outcome


def _store(ws: Workspace, user: User, sc: Scenario, seed: int, label: str, plan: Version | None, result: RunResult,
           paths: dict[str, Path], found: list[dict[str, Any]], outcome: RunOutcome) -> None:
    cat = ws.catalog
    meta = {"scenario": sc.name, "seed": seed}
    if plan is None:
        plan = cat.put(user, yaml.safe_dump(sc.raw, sort_keys=False).encode(), name=f"{sc.name}.yaml", kind="mission",
                       label=label, metadata={**meta, "role": "plan"}, source_path=sc.source)
    outcome.plan = plan
    outcome.results = cat.put(user, paths["metrics"], name=f"{sc.name}-seed{seed}-metrics.json", kind="mission",
                              label=label, parents=[plan.id],
                              metadata={**meta, "role": "results", "tasks": result.tasks, "decisions": result.decisions})
    outcome.replay = cat.put(user, paths["replay"], name=f"{sc.name}-seed{seed}-replay.jsonl", kind="telemetry",
                             label=label, parents=[plan.id], metadata={**meta, "role": "replay"})
    by_detections: dict[str, list[tuple[dict[str, Any], Version]]] = {}
    for f in found:
        det = f.get("detection") or {}
        parents = [det["version"], plan.id] if det.get("version") else [plan.id]
        v = cat.put(user, json.dumps(f, indent=1).encode(), name=f"{sc.name}-seed{seed}-finding-{f['task']}.json",
                    kind="finding", label=label, parents=parents,
                    metadata={**meta, "task": f["task"], "level": f["level"], "robot": f["robot"],
                              "detection": det.get("version"), "feature": det.get("feature")})
        outcome.findings.append(v)
        if det.get("version") and _rank(f["level"]) > _rank(det.get("level")):
            by_detections.setdefault(det["version"], []).append((f, v))
    for det_id, seen in by_detections.items():
        outcome.detections.append(_upgrade_detections(ws, user, det_id, seen))


def _rank(level: str | None) -> int:
    return LEVELS.index(level) if level in LEVELS else -1


def _upgrade_detections(ws: Workspace, user: User, det_id: str, seen: list[tuple[dict[str, Any], Version]]) -> Version:
    """A new version of the detections asset where robots saw a detection at a better level (the old one
    stays as it was), derived from it and from the findings; label: at least theirs."""
    old = ws.catalog.get(user, det_id)
    doc = json.loads(ws.catalog.read_bytes(user, det_id))
    for f, v in seen:
        props = doc["features"][int(f["detection"]["feature"])].setdefault("properties", {})
        props["dri_level_imagery"] = props.get("dri_level")
        props["dri_level"] = f["level"]
        props["confirmed_by"] = {"finding": v.id, "robot": f["robot"], "robot_type": f["robot_type"],
                                 "t_s": f["t"], "range_m": f["range_m"], "gsd_m": f["gsd_m"]}
    return ws.catalog.put(user, json.dumps(doc).encode(), name=old.name, kind="detections", asset_id=old.asset_id,
                          parents=[det_id, *(v.id for _, v in seen)],
                          metadata={**old.metadata, "updated_by": "pack", "findings": [v.id for _, v in seen]})


def mission_raster(ws: Workspace, user: User, sc: Scenario, plan: Version | None, max_px: int = 1024) -> dict[str, Any] | None:
    """The image a mission's detections came from, as a PNG for the replay with its extent in the
    scenario's metres; None when there is none the user may read (hidden looks like missing) or it
    cannot be placed (no CRS)."""
    det_id = plan.metadata.get("from_detections") if plan is not None else None
    if not det_id or sc.lonlat_origin is None:
        return None
    try:
        parents = ws.catalog.get(user, det_id).parents
        image = next((p for p in parents if ws.catalog.get(user, p).kind == "image"), None)
        return None if image is None else _raster_png(ws.catalog.blob_path(user, image), sc, max_px)
    except NotFound:
        return None


def _raster_png(path: Path, sc: Scenario, max_px: int) -> dict[str, Any] | None:
    import base64
    import io

    import numpy as np
    import rasterio
    from PIL import Image
    from rasterio.errors import RasterioError
    from rasterio.warp import transform as warp

    try:
        with rasterio.open(path) as ds:
            if ds.crs is None:
                return None
            f = max(ds.width, ds.height) / max_px
            shape = (max(1, int(ds.height / f)), max(1, int(ds.width / f))) if f > 1 else (ds.height, ds.width)
            bands = [1, 2, 3] if ds.count >= 3 else [1]
            arr = ds.read(bands, out_shape=(len(bands), *shape)).astype(np.float64)
            a, b, c, d, e, f_ = tuple(ds.transform)[:6]
            corners = [(a * x + b * y + c, d * x + e * y + f_)
                       for x, y in ((0, 0), (ds.width, 0), (ds.width, ds.height), (0, ds.height))]
            lon, lat = warp(ds.crs, "EPSG:4326", [c[0] for c in corners], [c[1] for c in corners])
    except (RasterioError, OSError, ValueError):
        return None
    lo, hi = np.percentile(arr, [2, 98])
    a = np.clip((arr - lo) / max(hi - lo, 1e-9) * 255, 0, 255).astype(np.uint8)
    img = Image.fromarray(a[0] if len(bands) == 1 else np.moveaxis(a, 0, -1))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    xy = [sc.from_lonlat(p) for p in zip(lon, lat, strict=True)]
    xs, ys = [p[0] for p in xy], [p[1] for p in xy]
    return {"png": "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode(),
            "extent": [round(min(xs), 2), round(min(ys), 2), round(max(xs), 2), round(max(ys), 2)]}


def findings_of(sc: Scenario, result: RunResult) -> list[dict[str, Any]]:
    """What the robots saw of each target (its best sighting), for the targets that came from detections."""
    ids = target_ids(sc)
    # a target whose task an officer did not allow (waiting, rejected, dropped) is not reported on
    held = {r["target"] for r in result.tasks if r["gate"] not in ("free", "approved")}
    out = []
    for t, s in sorted(result.sightings.items()):
        if t >= len(sc.targets) or sc.targets[t].detection is None or t in held:
            continue
        f = {"task": ids[t], "class": sc.targets[t].cls, "wanted": sc.targets[t].level, **s,
             "detection": sc.targets[t].detection}
        if sc.lonlat_origin is not None:
            f["robot_lonlat"] = [round(float(v), 7) for v in sc.to_lonlat(s["robot_xy"])]
            f["target_lonlat"] = [round(float(v), 7) for v in sc.to_lonlat(s["target_xy"])]
        out.append(f)
    return out


def findings_geojson(found: list[dict[str, Any]]) -> dict[str, Any]:
    """RFC 7946 points (WGS84 lon/lat) of the findings."""
    return {"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": {"type": "Point", "coordinates": f["target_lonlat"]},
         "properties": {k: v for k, v in f.items() if k not in ("target_lonlat",)}}
        for f in found if "target_lonlat" in f]}


# ---------------------------------------------------------------------------------------- planning
def _robots_arg(spec: str) -> list[tuple[str, int]]:
    out = []
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, _, count = part.partition(":")
        if name not in BUILTIN_TYPES:
            raise UsageError(f"--robots {spec}: unknown robot type {name!r} (known: {', '.join(sorted(BUILTIN_TYPES))})")
        try:
            n = int(count or 1)
        except ValueError:
            raise UsageError(f"--robots {spec}: {part!r}: the count after ':' must be a whole number") from None
        if n < 1:
            raise UsageError(f"--robots {spec}: {part!r}: the count must be >= 1")
        out.append((name, n))
    if not out:
        raise UsageError("--robots: give at least one TYPE:COUNT, e.g. quadcopter:4")
    return out


def _area_arg(spec: str) -> list[float]:
    try:
        v = [float(x) for x in spec.split(",")]
    except ValueError:
        v = []
    if len(v) != 4 or not (-180 <= v[0] < v[2] <= 180 and -90 <= v[1] < v[3] <= 90):
        raise UsageError(f"--area {spec}: expected WEST,SOUTH,EAST,NORTH in degrees (west < east, south < north)")
    return v


def _centre(geom: dict[str, Any]) -> list[float] | None:
    if geom.get("type") == "Point":
        c = geom.get("coordinates") or []
        return [float(c[0]), float(c[1])] if len(c) >= 2 else None
    if geom.get("type") == "Polygon":
        ring = (geom.get("coordinates") or [[]])[0]
        pts = ring[:-1] if len(ring) > 1 and ring[0] == ring[-1] else ring
        if not pts:
            return None
        return [sum(p[0] for p in pts) / len(pts), sum(p[1] for p in pts) / len(pts)]
    return None


def plan_from_detections(ws: Workspace, user: User, detections_id: str, *, level: str = "I",
                         robots: str = "quadcopter:4", area: str | None = None, label: str | None = None,
                         rules: list[dict[str, Any]] | None = None, duration: float = 900.0,
                         name: str | None = None) -> PlanOutcome:
    """A mission whose tasks are the stored detections the imagery could not grade to `level`, for robots
    with better sensors to confirm; stored as a mission plan derived from the detections."""
    if level not in LEVELS:
        raise UsageError(f"--level {level!r}: must be one of {', '.join(LEVELS)}")
    fleet = _robots_arg(robots)
    box = _area_arg(area) if area else None
    det = ws.catalog.get(user, detections_id)
    if det.kind != "detections":
        raise UsageError(f"{det.id} is a {det.kind} version, not detections (from `casemate detect`)")
    try:
        doc = json.loads(ws.catalog.read_bytes(user, det.id))
    except ValueError:
        raise UsageError(f"{det.id}: not a GeoJSON document (a GeoPackage? give the .geojson version)") from None
    if not isinstance(doc, dict) or doc.get("type") != "FeatureCollection":
        raise UsageError(f"{det.id}: not a GeoJSON FeatureCollection")
    if doc.get("coordinates") == "pixel":
        raise UsageError(f"{det.id}: the image was not georeferenced (pixel coordinates): robots need lon/lat")
    targets = []
    for k, feat in enumerate(doc.get("features") or []):
        props = (feat or {}).get("properties") or {}
        have = props.get("dri_level")
        if _rank(have) >= LEVELS.index(level):
            continue  # the imagery already graded it to the wanted level
        c = _centre((feat or {}).get("geometry") or {})
        if c is None or not (-180 <= c[0] <= 180 and -90 <= c[1] <= 90):
            raise UsageError(f"{det.id}: features[{k}]: no point or polygon in lon/lat degrees")
        size = props.get("width_m") or props.get("length_m") or 5.0
        cls = props.get("label") or props.get("class")
        targets.append({"id": f"d{k}", "position": c, "level": level, "size": float(size),
                        **({"class": str(cls)} if cls else {}),
                        "detection": {"version": det.id, "feature": k, "level": have,
                                      "johnson_ceiling": props.get("johnson_ceiling"), "gsd_m": props.get("gsd_m"),
                                      "lonlat": c}})
    if not targets:
        raise UsageError(f"{det.id}: no detection below level {level}: nothing for the robots to confirm")
    if box is None:
        lons, lats = [t["position"][0] for t in targets], [t["position"][1] for t in targets]
        lat0 = (min(lats) + max(lats)) / 2
        pad_lat = max(300.0 / 111_320, 0.1 * (max(lats) - min(lats)))
        pad_lon = max(300.0 / (111_320 * max(math.cos(math.radians(lat0)), 0.01)), 0.1 * (max(lons) - min(lons)))
        box = [min(lons) - pad_lon, min(lats) - pad_lat, max(lons) + pad_lon, max(lats) + pad_lat]
    w, s, e, n = box
    start = [(w + e) / 2, (s + n) / 2]
    scen: dict[str, Any] = {
        "name": name or f"confirm-{det.id}",
        "label": label or format_label(det.label),
        "description": f"Confirm {len(targets)} detections of {det.id} at level {level}",
        "area": {"crs": "lonlat", "polygon": [[w, s], [e, s], [e, n], [w, n]]},
        "terrain": {"default": "land"},
        "robots": [{"type": t, "count": c, "start": start, "role": "tasks"} for t, c in fleet],
        "targets": targets,
        "objectives": {"search": False, "visit": True, "surveillance": False},
        "duration": float(duration),
        "dt": 0.5,
    }
    if rules:
        scen["approvals"] = rules
    sc = parse_scenario(scen, f"plan from {det.id}")  # every check, before anything is stored
    ws.catalog.check_label(user, scen["label"], [det.id])
    marked = marked_tasks(sc)
    mission = ws.catalog.put(user, yaml.safe_dump(scen, sort_keys=False).encode(), name=f"{scen['name']}.yaml",
                             kind="mission", label=scen["label"], parents=[det.id],
                             metadata={"role": "plan", "scenario": scen["name"], "from_detections": det.id,
                                       "level": level, "tasks": len(targets), "marked": sorted(marked)})
    tasks = [{"task": t["id"], "class": t.get("class"), "wanted": level, "imagery": t["detection"]["level"],
              "marked": t["id"] in marked} for t in targets]
    return PlanOutcome(mission, sc, tasks)


# ---------------------------------------------------------------------------------------- decisions
def mission_tasks(ws: Workspace, user: User, mission_id: str) -> list[dict[str, Any]]:
    """A mission's tasks: which a rule marks, and the decision on each."""
    sc, plan = load_mission(ws, user, mission_id)
    assert plan is not None
    marked = marked_tasks(sc)
    decided = {d.task: d for d in decisions_for(ws, user, plan)}
    out = []
    for tid, t in zip(target_ids(sc), sc.targets, strict=True):
        d = decided.get(tid)
        out.append({"task": tid, "class": t.cls, "level": t.level, "marked": tid in marked,
                    "decision": d.decision if d else None, "by": d.by if d else None, "reason": d.reason if d else None})
    return out


def decide(ws: Workspace, user: User, mission_id: str, task: str, decision: str, reason: str) -> Version:
    """An officer approves or rejects a marked task of a stored mission; stored (a decision version derived
    from the mission, same label) and audited with its reason. One decision per task."""
    if decision not in DECISIONS:
        raise UsageError(f"decision must be one of {', '.join(DECISIONS)}, got {decision!r}")
    reason = (reason or "").strip()
    if not reason:
        raise UsageError("--reason is required: say why (it goes into the audit log)")
    if not (user.has_role("officer") or user.has_role("admin")):
        raise PermissionDenied(f"only an officer (or an admin) may {decision} a task")
    if not Path(mission_id).exists() and (SCENARIO_DIR / f"{mission_id}.yaml").exists():
        raise UsageError(f"{mission_id} is a built-in scenario: decisions are on stored missions (a version id)")
    sc, plan = load_mission(ws, user, mission_id)
    if plan is None:
        raise UsageError(f"{mission_id}: decisions are on stored missions: give the mission's version id")
    ids = target_ids(sc)
    if task not in ids:
        raise UsageError(f"mission {plan.id} has no task {task!r} (tasks: {', '.join(ids[:20])})")
    if task not in marked_tasks(sc):
        raise UsageError(f"task {task} of mission {plan.id} needs no approval: no rule marks it")
    prior = next((d for d in decisions_for(ws, user, plan) if d.task == task), None)
    if prior is not None:
        raise UsageError(f"task {task} of mission {plan.id} was already {_PAST.get(prior.decision, prior.decision)} by {prior.by}: {prior.reason}")
    body = {"mission": plan.id, "task": task, "decision": decision, "reason": reason, "by": user.name}
    with ws.transaction():  # the decision and its audit entry together
        v = ws.catalog.put(user, json.dumps(body).encode(), name=f"{sc.name}-{task}-{decision}.json", kind="mission",
                           label=format_label(plan.label), parents=[plan.id],
                           metadata={"role": "decision", "task": task, "decision": decision, "reason": reason})
        ws.audit.record(user.name, f"pack.{decision}", plan.id, {"task": task, "reason": reason, "decision_version": v.id})
    return v
