"""Job operations the CLI (and later the HTTP API) share: cancel, wait."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from casemate.errors import UsageError
from casemate.factory.executors import executor_for, reconcile
from casemate.factory.jobs import TERMINAL, Job, JobStore
from casemate.security.policy import User

if TYPE_CHECKING:
    from casemate.workspace import Workspace


def cancel_job(ws: Workspace, user: User, job_id: str) -> Job:
    store = JobStore(ws)
    job = store.get(user, job_id)
    store.check_may_control(user, job)
    if job.state in TERMINAL:
        raise UsageError(f"{job_id} has already ended ({job.state})")
    # The row first: the process, killed next, cannot then report anything else.
    job = store.update(job_id, state="cancelled", log=f"cancelled by {user.name}", actor=user.name)
    executor_for(ws, job.executor, **job.spec.get("resources", {})).cancel(job)
    return job


def wait_job(ws: Workspace, user: User, job_id: str, timeout_s: float = 7 * 24 * 3600, poll_s: float = 0.5) -> Job:
    store = JobStore(ws)
    deadline = time.monotonic() + timeout_s
    while True:
        job = reconcile(ws, store.get(user, job_id))
        if job.state in TERMINAL or time.monotonic() > deadline:
            return job
        time.sleep(poll_s)
