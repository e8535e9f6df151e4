"""The console's imagery compare: change between two dates, as a job, over the imagery's service.

`POST /imagery/compare` runs `casemate.imagery.service.compare_sources` (what `casemate imagery
compare` runs) on two catalog ids (detections or images) and, optionally, a stored zones GeoJSON;
`GET /items/ID/change` is the stored change's per-zone table and alerts. The change's features are
drawn on the map over the later image (`GET /items/ID/detections` of a change version).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from casemate.catalog.models import Version
from casemate.console.jobs import JobRunner
from casemate.errors import CasemateError, NotFound, UsageError
from casemate.security.labels import format_label, lub
from casemate.security.policy import User
from casemate.workspace import Workspace

ID = r"^[A-Za-z0-9][A-Za-z0-9_-]*$"
COMPARABLE = ("detections", "image")


class CompareBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    before: str = Field(min_length=1, max_length=64, pattern=ID, description="the earlier date: a detections or image id")
    after: str = Field(min_length=1, max_length=64, pattern=ID, description="the later date: a detections or image id")
    zones: str | None = Field(default=None, max_length=64, pattern=ID,
                              description="a stored GeoJSON of zones (polygons with `name`, optional `alert_threshold`)")
    alert: int | None = Field(default=None, ge=1, le=1_000_000, description="alert when a class changes by this many")
    min_score: float = Field(default=0.0, ge=0.0, le=1.0)


def _comparable(ws: Workspace, user: User, ref: str, field: str) -> Version:
    v = ws.catalog.get(user, ref, audit=False)  # hidden is not found, before anything runs
    if v.kind not in COMPARABLE:
        raise UsageError(f"{field}: {v.name} is a {v.kind}: compare takes detections or images")
    if Path(ref).exists():  # the service reads a path named like this first: never a server file
        raise UsageError(f"{field}: {ref!r} is not a catalog id")
    return v


def change_json(v: Version) -> dict[str, Any]:
    m = v.metadata or {}
    rows = []
    for zone, per in (m.get("summary") or {}).items():
        for cls, s in per.items():
            if any(s.values()):
                rows.append({"zone": zone, "class": cls, **s})
    return {"before": m.get("before"), "after": m.get("after"), "rows": rows, "alerts": m.get("alerts") or [],
            "params": m.get("params") or {}}


def router(ws: Workspace, jobs: JobRunner, current_user: Callable[..., User],
           label_json: Callable[[Any], dict[str, Any]], version_json: Callable[[Version], dict[str, Any]]) -> APIRouter:
    api = APIRouter()

    @api.post("/imagery/compare", tags=["imagery"])
    def compare(body: CompareBody, user: User = Depends(current_user)) -> dict[str, Any]:
        """Change between two dates (appeared, departed, moved, per zone and class) as a job; the
        result is the stored change version (label: at least the lub of its inputs)."""
        from casemate.imagery.service import compare_sources

        if body.before == body.after:
            raise UsageError("after: compare needs two different dates (two different images or detections)")
        b = _comparable(ws, user, body.before, "before")
        a = _comparable(ws, user, body.after, "after")
        labels = [b.label, a.label]
        zones_path = None
        if body.zones:
            z = ws.catalog.get(user, body.zones, audit=False)
            labels.append(z.label)
            zones_path = ws.catalog.blob_path(user, z.id)
        # the zones are an input too: the change carries their label as well (the service sees a file)
        label = format_label(lub(labels)) if body.zones else None

        def work(progress: Callable[[float], None]) -> dict[str, Any]:
            progress(0.05)
            try:
                out = compare_sources(ws, user, b.id, a.id, zones=zones_path, alert=body.alert, label=label,
                                      min_score=body.min_score)
            except CasemateError as exc:
                if zones_path is not None:
                    exc.message = exc.message.replace(f"--zones {zones_path}", f"zones {body.zones}")
                raise
            return {"item": out.change.id, "before": out.before.id, "after": out.after.id,
                    "changes": len(out.result.changes), "alerts": len(out.result.alerts),
                    "label": format_label(out.change.label)}

        return {"job": jobs.submit(user.name, "compare", f"{b.id}→{a.id}", work).to_json()}

    @api.get("/items/{vid}/change", tags=["imagery"])
    def change(vid: str, user: User = Depends(current_user)) -> dict[str, Any]:
        """A stored change: its per-zone and per-class table, its alerts, the two dates compared."""
        v = ws.catalog.get(user, vid)
        if v.kind != "change":
            raise NotFound(f"{vid}/change")
        return {"change": version_json(v), **change_json(v), **label_json(v.label)}

    return api
