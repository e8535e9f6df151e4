"""Submitting jobs: check the inputs as the user, make the job (its label: the lub of its
inputs'), launch it on an executor. The payloads the jobs run live in training.py and advisor.py."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from casemate.errors import UsageError
from casemate.factory.jobs import Job, JobStore
from casemate.factory.training import DEFAULTS, parse_time
from casemate.security.labels import lub
from casemate.security.policy import User

if TYPE_CHECKING:
    from casemate.workspace import Workspace


def submit_training(ws: Workspace, user: User, *, dataset: str, executor: str = "local", base: str | None = None,
                    holdout: str | None = None, class_map: dict[str, str] | None = None,
                    classes: list[str] | None = None, partition: str | None = None, gpus: int | None = None,
                    time: str | None = None, name: str | None = None, **params: Any) -> Job:
    """Check the inputs as the user, make the job (label: lub of its inputs) and launch it."""
    from casemate.factory.datasets import get_dataset
    from casemate.factory.executors import executor_for
    from casemate.factory.registry import load_model

    unknown = set(params) - set(DEFAULTS)
    if unknown:
        raise UsageError(f"unknown training parameter(s): {', '.join(sorted(unknown))}")
    ds, manifest = get_dataset(ws, user, dataset)
    labels = [ds.label]
    base_v = None
    if base is not None:
        base_v = load_model(ws, user, base).version
        labels.append(base_v.label)
    hold_v = None
    if holdout is not None:
        hold_v, _ = get_dataset(ws, user, holdout)
        labels.append(hold_v.label)
    if not manifest["items"]:
        raise UsageError(f"dataset {ds.id} has no images")
    resources = {"partition": partition, "gpus": gpus, "time_min": parse_time(time)}
    spec = {"dataset": ds.id, "base": base_v.id if base_v else None, "holdout": hold_v.id if hold_v else None,
            "class_map": class_map or {}, "classes": classes, "name": name or f"detector-{ds.name}",
            "params": {**DEFAULTS, **{k: v for k, v in params.items() if v is not None}},
            "resources": {k: v for k, v in resources.items() if v is not None}}
    ex = executor_for(ws, executor, **spec["resources"])
    store = JobStore(ws)
    job = store.create(user, kind="train-detector", label=lub(labels), executor=executor, spec=spec)
    try:
        external = ex.launch(ws, job)
    except Exception as exc:
        store.update(job.id, state="failed", log=f"could not start: {exc}", actor=user.name)
        raise
    return store.update(job.id, external_id=external, log=f"submitted to {executor} as {external}", actor=user.name)

def submit_advisor_training(ws: Workspace, user: User, *, executor: str = "local", kind: str = "document",
                            holdout: float = 0.2, seed: int = 0) -> Job:
    """A training job for the advisor; its label is the lub of the documents the user may read."""
    from casemate.factory.executors import executor_for
    from casemate.factory.jobs import JobStore
    from casemate.security.labels import BOTTOM, lub

    if not 0 < holdout < 1:
        raise UsageError("--holdout must be between 0 and 1")
    labels = [v.label for v in ws.catalog.iter_versions(user, kind=kind)]
    if len(labels) < 8:
        raise UsageError(f"the label advisor needs at least 8 readable {kind}s (you may read {len(labels)})")
    ex = executor_for(ws, executor)
    store = JobStore(ws)
    job = store.create(user, kind="train-label-advisor", label=lub(labels) if labels else BOTTOM, executor=executor,
                       spec={"kind": kind, "holdout": holdout, "seed": seed, "resources": {}})
    try:
        external = ex.launch(ws, job)
    except Exception as exc:
        store.update(job.id, state="failed", log=f"could not start: {exc}", actor=user.name)
        raise
    return store.update(job.id, external_id=external, log=f"submitted to {executor} as {external}", actor=user.name)
