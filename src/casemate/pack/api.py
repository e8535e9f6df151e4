"""The pack's HTTP face: an APIRouter over the same service functions as the CLI.

The server mounts it with its own authentication dependency and its CasemateError handler (each error
class carries its HTTP status, hidden stays 404):

    app.include_router(pack_router(ws, current_user))
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from casemate.pack import service
from casemate.security.policy import User  # at run time: FastAPI reads the route's annotations

if TYPE_CHECKING:
    from casemate.workspace import Workspace


class PlanRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    detections: str = Field(min_length=1, max_length=64)
    level: str = "I"
    robots: str = Field(default="quadcopter:4", max_length=400)
    area: str | None = Field(default=None, max_length=200)
    label: str | None = Field(default=None, max_length=200)
    rules: list[dict[str, Any]] | None = None
    duration: float = Field(default=900.0, gt=0, le=86_400)


class RunRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # A name or an id, never a path: the server's files are not the caller's to choose.
    mission: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_-]+$",
                         description="a stored mission's id or a built-in scenario")
    seed: int = 0
    label: str | None = Field(default=None, max_length=200)
    # a paced run answers when it ends; decisions posted meanwhile (the approve/reject routes) reach it
    pace: float | None = Field(default=None, gt=0, le=10_000, description="simulated seconds per wall second")


class DecisionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=1, max_length=2000)


def pack_router(ws: Workspace, current_user: Callable[..., User]) -> APIRouter:
    router = APIRouter(prefix="/api/pack", tags=["pack"])

    @router.post("/missions")
    def plan(body: PlanRequest, user: User = Depends(current_user)) -> dict[str, Any]:
        """Plan a mission from stored detections (those below `level` become tasks)."""
        out = service.plan_from_detections(ws, user, body.detections, level=body.level, robots=body.robots,
                                           area=body.area, label=body.label, rules=body.rules, duration=body.duration)
        return {"mission": out.mission.to_json(), "tasks": out.tasks}

    @router.get("/missions/{mission}/tasks")
    def tasks(mission: str, user: User = Depends(current_user)) -> dict[str, Any]:
        return {"mission": mission, "tasks": service.mission_tasks(ws, user, mission)}

    @router.post("/missions/{mission}/tasks/{task}/{decision}")
    def decide(mission: str, task: str, decision: str, body: DecisionRequest,
               user: User = Depends(current_user)) -> dict[str, Any]:
        """`decision`: approve or reject; audited with the reason."""
        v = service.decide(ws, user, mission, task, decision, body.reason)
        return {"decision": v.to_json()}

    @router.post("/runs")
    def run(body: RunRequest, user: User = Depends(current_user)) -> dict[str, Any]:
        """Run a stored mission (or a built-in scenario) to the end; the outcome is in the catalog."""
        with tempfile.TemporaryDirectory(prefix="pack-run-") as tmp:  # the files are stored, not served
            out = service.run_scenario(ws, user, body.mission, seed=body.seed, label=body.label, out_dir=Path(tmp) / "run",
                                     pace=body.pace)
        m = out.result.metrics
        return {"plan": out.plan.to_json() if out.plan else None,
                "results": out.results.to_json() if out.results else None,
                "replay": out.replay.to_json() if out.replay else None,
                "findings": [f.to_json() for f in out.findings],
                "detections": [d.to_json() for d in out.detections],
                "tasks": out.result.tasks,
                "metrics": {k: m[k] for k in ("steps", "coverage", "targets_found", "tasks", "tasks_done", "collisions")}}

    return router
