"""The console's robot pack pages' API, over the pack's service functions (`casemate.pack.service`).

Plan a mission from stored detections (`plan_from_detections`), list and open missions with their
tasks and the officers' decisions (`mission_tasks`), approve or reject a marked task with a reason
(`decide`: officers), and read a run's results, findings and replay (versions in the catalog, read
through it). Runs themselves are started by `POST /pack/runs` (app.py) as a job.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field

from casemate.catalog.models import Version
from casemate.console.jobs import JobRunner
from casemate.console.queries import ListFilter, list_versions
from casemate.errors import NotFound, UsageError
from casemate.security.policy import User
from casemate.workspace import Workspace

ID = r"^[A-Za-z0-9][A-Za-z0-9_-]*$"
MAX_FRAMES = 600  # frames the page's player gets (evenly spaced); the stored replay keeps them all


class PlanBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    detections: str = Field(min_length=1, max_length=64, pattern=ID, description="a detections version id (lon/lat)")
    level: str = Field(default="I", pattern=r"^[DRI]$", description="the D/R/I level the robots must reach")
    robots: str = Field(default="quadcopter:4", max_length=400, description="TYPE:COUNT,... e.g. quadcopter:4")
    label: str | None = Field(default=None, max_length=200)
    approve_classes: list[str] = Field(default_factory=list, max_length=32,
                                       description="classes whose tasks wait for an officer's approval")
    duration: float = Field(default=900.0, gt=0, le=86_400)


class DecisionBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    decision: str = Field(pattern=r"^(approve|reject)$")
    reason: str = Field(min_length=1, max_length=2000)


def _role(v: Version) -> str | None:
    return (v.metadata or {}).get("role")


def _runs(kids: list[Version]) -> list[tuple[Version, Version | None, list[Version]]]:
    """A mission's runs from its derived versions, in the order they were stored: the pack stores a
    run's results, then its replay, then its findings, one after the other."""
    out: list[tuple[Version, Version | None, list[Version]]] = []
    for k in kids:  # oldest first
        if k.kind == "mission" and _role(k) == "results":
            out.append((k, None, []))
        elif out and _role(k) == "replay" and out[-1][1] is None:
            out[-1] = (out[-1][0], k, out[-1][2])
        elif out and k.kind == "finding":
            out[-1][2].append(k)
    return out


def router(ws: Workspace, jobs: JobRunner, current_user: Callable[..., User],
           label_json: Callable[[Any], dict[str, Any]], version_json: Callable[[Version], dict[str, Any]]) -> APIRouter:
    from casemate.security.labels import lub

    api = APIRouter()

    def page(labels: list[Any]) -> dict[str, Any]:
        from casemate.security.labels import parse_label

        return label_json(lub(labels) if labels else parse_label("NP"))

    @api.post("/pack/plans", tags=["pack"])
    def plan(body: PlanBody, user: User = Depends(current_user)) -> dict[str, Any]:
        """A mission from stored detections: those below `level` become tasks for the robots."""
        from casemate.pack import service

        rules = [{"class": sorted(set(body.approve_classes))}] if body.approve_classes else None
        out = service.plan_from_detections(ws, user, body.detections, level=body.level, robots=body.robots,
                                           label=body.label, rules=rules, duration=body.duration)
        return {"mission": version_json(out.mission), "tasks": out.tasks, **label_json(out.mission.label)}

    @api.get("/pack/missions", tags=["pack"])
    def missions(user: User = Depends(current_user), limit: int = Query(50, ge=1, le=200)) -> dict[str, Any]:
        """Stored mission plans the caller may read, newest first."""
        rows, _ = list_versions(ws, user, ListFilter(kind="mission"), limit=200, audit=True)
        plans = [v for v in rows if _role(v) == "plan"][:limit]
        return {"missions": [version_json(v) for v in plans], **page([v.label for v in plans])}

    @api.get("/pack/missions/{mission}", tags=["pack"])
    def mission(mission: str, user: User = Depends(current_user)) -> dict[str, Any]:
        """A stored mission: its tasks (marked ones with their decision) and its runs' outputs."""
        from casemate.pack import service

        v = ws.catalog.get(user, mission)
        if v.kind != "mission" or _role(v) != "plan":
            raise UsageError(f"{v.id} is a {v.kind} version, not a mission plan")
        tasks = service.mission_tasks(ws, user, v.id)
        kids = ws.catalog.children(user, v.id)
        runs = [{"seed": (r.metadata or {}).get("seed"), "results": version_json(r),
                 "replay": version_json(rp) if rp else None, "findings": [version_json(f) for f in fs]}
                for r, rp, fs in _runs(kids)]
        labels = [v.label] + [k.label for k in kids]
        return {"mission": version_json(v), "tasks": tasks, "runs": runs,
                "decisions": [version_json(k) for k in kids if _role(k) == "decision"], **page(labels)}

    @api.post("/pack/missions/{mission}/tasks/{task}/decision", tags=["pack"])
    def decide(mission: str, task: str, body: DecisionBody, user: User = Depends(current_user)) -> dict[str, Any]:
        """Officers: approve or reject a marked task, with the reason (stored and audited)."""
        from casemate.pack import service

        v = service.decide(ws, user, mission, task, body.decision, body.reason)
        return {"decision": version_json(v), **label_json(v.label)}

    @api.get("/items/{vid}/replay", tags=["pack"])
    def replay(vid: str, user: User = Depends(current_user)) -> dict[str, Any]:
        """A run's replay (header and frames, at most 600 evenly spaced) for the page's own player."""
        v = ws.catalog.get(user, vid)
        if v.kind != "telemetry" or _role(v) != "replay":
            raise NotFound(f"{vid}/replay")
        header: dict[str, Any] = {}
        frames: list[dict[str, Any]] = []
        for line in ws.catalog.read_bytes(user, v.id).splitlines():
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except ValueError:
                raise UsageError(f"{v.name}: not a pack replay (a line is not JSON)") from None
            if rec.get("type") == "header":
                header = rec
            else:
                frames.append(rec)
        if not header or not frames:
            raise UsageError(f"{v.name}: not a pack replay (no header or no frames)")
        step = max(1, -(-len(frames) // MAX_FRAMES))
        shown = frames[::step]
        if shown[-1] is not frames[-1]:
            shown.append(frames[-1])
        return {"replay": version_json(v), "header": header, "frames": shown, "total_frames": len(frames),
                **label_json(v.label)}

    @api.get("/items/{vid}/results", tags=["pack"])
    def results(vid: str, user: User = Depends(current_user)) -> dict[str, Any]:
        """A run's results (metrics, tasks, decisions) and the findings derived from its mission."""
        v = ws.catalog.get(user, vid)
        if v.kind != "mission" or _role(v) != "results":
            raise NotFound(f"{vid}/results")
        try:
            metrics = json.loads(ws.catalog.read_bytes(user, v.id))
        except ValueError:
            raise UsageError(f"{v.name}: not a pack results file (not JSON)") from None
        keep = {k: metrics.get(k) for k in metrics if k not in ("coverage_curve", "targets")}
        findings: list[Version] = []
        replay_v = None
        for pid in v.parents:
            for r, rp, fs in _runs(ws.catalog.children(user, pid)):
                if r.id == v.id:
                    replay_v, findings = rp, fs
        found = []
        for f in findings:
            m = f.metadata or {}
            found.append({**version_json(f), "task": m.get("task"), "level": m.get("level"), "robot": m.get("robot")})
        labels = [v.label] + [f.label for f in findings] + ([replay_v.label] if replay_v else [])
        return {"results": version_json(v), "metrics": keep, "tasks": (v.metadata or {}).get("tasks") or [],
                "decisions": (v.metadata or {}).get("decisions") or [], "findings": found,
                "replay": version_json(replay_v) if replay_v else None, **page(labels)}

    return api
