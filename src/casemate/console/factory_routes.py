"""The console's model factory pages' API, over the factory's service functions (`casemate.factory`).

Datasets (`list_datasets`, `get_dataset`, `dataset_summary`), training jobs (`JobStore` under the
job's label, `submit_training`, `cancel_job`; the factory's own jobs, with their progress), models
(`list_models`) and aliases (`promote`, `rollback`: officers and admins, as the factory rules; a
promotion with a gate evaluates both models, so it runs as a console job).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field

from casemate.catalog.models import Version
from casemate.console.jobs import JobRunner
from casemate.errors import CasemateError
from casemate.security.labels import lub, parse_label
from casemate.security.policy import User
from casemate.workspace import Workspace

ID = r"^[A-Za-z0-9][A-Za-z0-9_-]*$"
ALIAS = r"^[a-z][a-z0-9_-]{0,63}$"


class TrainBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dataset: str = Field(min_length=1, max_length=64, pattern=ID)
    base: str | None = Field(default=None, max_length=64, pattern=ID, description="a model id or alias to start from")
    holdout: str | None = Field(default=None, max_length=64, pattern=ID, description="a dataset to score on")
    name: str | None = Field(default=None, max_length=120, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    epochs: int | None = Field(default=None, ge=1, le=10_000)
    minutes: float | None = Field(default=None, gt=0, le=7 * 24 * 60)


class PromoteBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    alias: str = Field(default="production", pattern=ALIAS)
    gate: str | None = Field(default=None, max_length=64, pattern=ID, description="the gate dataset's id")
    min_gain: float = Field(default=0.0, ge=0.0, le=1.0)


def router(ws: Workspace, jobs: JobRunner, current_user: Callable[..., User],
           label_json: Callable[[Any], dict[str, Any]], version_json: Callable[[Version], dict[str, Any]]) -> APIRouter:
    api = APIRouter()

    def page(labels: list[Any]) -> dict[str, Any]:
        return label_json(lub(labels) if labels else parse_label("NP"))

    def job_json(job: Any, with_log: bool = False) -> dict[str, Any]:
        return {**job.to_json(with_log=with_log), **label_json(job.label)}

    @api.get("/factory/datasets", tags=["factory"])
    def datasets(user: User = Depends(current_user), limit: int = Query(100, ge=1, le=500)) -> dict[str, Any]:
        """Datasets the caller may read (images, objects, classes), newest first."""
        from casemate.factory.datasets import dataset_summary, get_dataset, list_datasets

        out = []
        labels = []
        for v in list_datasets(ws, user, limit=limit):
            try:
                _, manifest = get_dataset(ws, user, v.id)
            except CasemateError:
                continue  # a dataset version that is not a manifest (the factory would refuse it too)
            out.append({**dataset_summary(v, manifest), **label_json(v.label)})
            labels.append(v.label)
        return {"datasets": out, **page(labels)}

    @api.get("/factory/jobs", tags=["factory"])
    def factory_jobs(user: User = Depends(current_user), limit: int = Query(50, ge=1, le=500)) -> dict[str, Any]:
        """Training jobs the caller may read (their label), newest first, with their progress."""
        from casemate.factory.executors import reconcile
        from casemate.factory.jobs import TERMINAL, JobStore

        out = []
        for job in JobStore(ws).list(user, limit=limit):
            if job.state not in TERMINAL:
                try:
                    job = reconcile(ws, job)  # the executor's word on a job still running
                except CasemateError:
                    pass
            out.append(job_json(job))
        return {"jobs": out, **page([parse_label(j["label"]) for j in out])}

    @api.get("/factory/jobs/{job_id}", tags=["factory"])
    def factory_job(job_id: str, user: User = Depends(current_user)) -> dict[str, Any]:
        from casemate.factory.executors import reconcile
        from casemate.factory.jobs import JobStore

        job = reconcile(ws, JobStore(ws).get(user, job_id))
        return {"job": job_json(job, with_log=True), **label_json(job.label)}

    @api.post("/factory/jobs", tags=["factory"])
    def train(body: TrainBody, user: User = Depends(current_user)) -> dict[str, Any]:
        """Submit a training job on the local executor (label: the lub of its inputs)."""
        from casemate.factory.submit import submit_training

        job = submit_training(ws, user, dataset=body.dataset, executor="local", base=body.base,
                              holdout=body.holdout, name=body.name, epochs=body.epochs, minutes=body.minutes)
        return {"job": job_json(job), **label_json(job.label)}

    @api.post("/factory/jobs/{job_id}/cancel", tags=["factory"])
    def cancel(job_id: str, user: User = Depends(current_user)) -> dict[str, Any]:
        from casemate.factory.service import cancel_job

        job = cancel_job(ws, user, job_id)
        return {"job": job_json(job), **label_json(job.label)}

    @api.get("/factory/models", tags=["factory"])
    def models(user: User = Depends(current_user), limit: int = Query(100, ge=1, le=500)) -> dict[str, Any]:
        """Registered models the caller may read, with the aliases that name them and their metrics."""
        from casemate.factory.registry import list_models

        out = []
        for v, aliases in list_models(ws, user, limit=limit):
            reg = (v.metadata or {}).get("registry") or {}
            out.append({**version_json(v), "aliases": aliases, "taxonomy": reg.get("taxonomy"),
                        "metrics": reg.get("metrics"), "model_name": reg.get("name")})
        return {"models": out, **page([parse_label(m["label"]) for m in out])}

    @api.post("/factory/models/{vid}/promote", tags=["factory"])
    def promote(vid: str, body: PromoteBody, user: User = Depends(current_user)) -> dict[str, Any]:
        """Officers and admins: point an alias at this model, past the gate (as a job: a gate
        evaluates both models)."""
        from casemate.factory.registry import load_model, promote

        load_model(ws, user, vid)  # hidden is not found; an altered model is refused before anything
        if body.gate is None:  # no evaluation to run: at once (the factory checks the role)
            out = promote(ws, user, vid, alias=body.alias, gate=None, min_gain=body.min_gain)
            return {"promoted": {"alias": out["alias"], "model": out["model"], "previous": out.get("previous")}}

        def work(progress: Callable[[float], None]) -> dict[str, Any]:
            progress(0.05)
            out = promote(ws, user, vid, alias=body.alias, gate=body.gate, min_gain=body.min_gain)
            return {"item": out["model"], "alias": out["alias"], "previous": out.get("previous"),
                    "gain": out.get("gain")}

        return {"job": jobs.submit(user.name, "promote", vid, work).to_json()}

    @api.post("/factory/aliases/{alias}/rollback", tags=["factory"])
    def rollback(alias: str, user: User = Depends(current_user)) -> dict[str, Any]:
        """Officers and admins: the alias back to the model it named before its last promotion."""
        from casemate.factory.registry import rollback as do_rollback

        return do_rollback(ws, user, alias)

    return api
