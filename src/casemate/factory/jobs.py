"""Jobs: long work (training, evaluation) kept in the catalog's job table.

A job carries a label, at least the least upper bound of its inputs' labels, fixed at submission:
its log, progress and result are read only by users who may read that label (hidden looks like
missing). The job's own process writes its state, progress and log here; executors only launch,
cancel and report what the scheduler knows (see executors.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from casemate.catalog.service import new_id
from casemate.errors import NotFound, PermissionDenied, UsageError
from casemate.security.labels import Label, format_label, parse_label
from casemate.security.policy import User, can_read
from casemate.store import db

if TYPE_CHECKING:
    from casemate.workspace import Workspace

STATES = ("queued", "running", "completed", "failed", "cancelled")
TERMINAL = ("completed", "failed", "cancelled")
MAX_LOG = 1_000_000  # characters kept; older lines are dropped first


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


@dataclass(frozen=True)
class Job:
    id: str
    kind: str
    state: str
    submitted_by: str
    label: Label
    executor: str
    external_id: str | None
    spec: dict[str, Any]
    result: dict[str, Any] | None
    log: str
    progress: float
    created_at: str
    updated_at: str
    started_at: str | None
    ended_at: str | None

    def to_json(self, *, with_log: bool = False) -> dict[str, Any]:
        d = {
            "id": self.id, "kind": self.kind, "state": self.state, "submitted_by": self.submitted_by,
            "label": format_label(self.label), "executor": self.executor, "external_id": self.external_id,
            "spec": self.spec, "result": self.result, "progress": self.progress, "created_at": self.created_at,
            "updated_at": self.updated_at, "started_at": self.started_at, "ended_at": self.ended_at,
        }
        if with_log:
            d["log"] = self.log
        return d


def _to_job(row: Any) -> Job:
    return Job(
        id=row.public_id, kind=row.kind, state=row.state, submitted_by=row.submitted_by,
        label=parse_label(row.label), executor=row.executor, external_id=row.external_id,
        spec=json.loads(row.spec or "{}"), result=json.loads(row.result) if row.result else None,
        log=row.log or "", progress=float(row.progress or 0.0), created_at=row.created_at,
        updated_at=row.updated_at, started_at=row.started_at, ended_at=row.ended_at,
    )


class JobStore:
    def __init__(self, ws: Workspace) -> None:
        self.ws = ws

    # -- for users -------------------------------------------------------------------------------
    def create(self, user: User, *, kind: str, label: Label, executor: str, spec: dict[str, Any]) -> Job:
        if not can_read(user, label):
            raise UsageError(f"a job labelled {format_label(label)} is above your clearance")
        now = _now()
        jid = "j" + new_id()[:11]
        with self.ws.transaction() as conn:
            conn.execute(db.jobs.insert().values(
                public_id=jid, kind=kind, state="queued", submitted_by=user.name, label=format_label(label),
                executor=executor, spec=json.dumps(spec, sort_keys=True), log="", progress=0.0,
                created_at=now, updated_at=now))
            self.ws.audit.record(user.name, "job.submit", jid, {"kind": kind, "executor": executor,
                                                                "label": format_label(label), "spec": spec})
        return self.get_raw(jid)

    def get(self, user: User, job_id: str) -> Job:
        """A job the user may read (its label); otherwise NotFound, as for a missing one."""
        try:
            job = self.get_raw(job_id)
        except NotFound:
            job = None
        if job is None or not can_read(user, job.label):
            self.ws.audit.record(user.name, "refused", job_id, {"action": "job.show"})
            raise NotFound(job_id)
        return job

    def list(self, user: User, *, state: str | None = None, limit: int = 50) -> list[Job]:
        if state is not None and state not in STATES:
            raise UsageError(f"unknown state {state!r}: use one of {', '.join(STATES)}")
        q = select(db.jobs).order_by(db.jobs.c.id.desc())
        if state is not None:
            q = q.where(db.jobs.c.state == state)
        out: list[Job] = []
        with self.ws.engine.connect() as conn:
            for row in conn.execute(q):
                job = _to_job(row)
                if can_read(user, job.label):
                    out.append(job)
                    if len(out) >= limit:
                        break
        return out

    def check_may_control(self, user: User, job: Job) -> None:
        if job.submitted_by != user.name and not user.has_role("admin"):
            self.ws.audit.record(user.name, "refused", job.id, {"action": "job.cancel", "reason": "not submitter"})
            raise PermissionDenied("only the user who submitted a job, or an admin, can cancel it")

    # -- for the job's own process and the executors --------------------------------------------
    def get_raw(self, job_id: str) -> Job:
        with self.ws.engine.connect() as conn:
            row = conn.execute(select(db.jobs).where(db.jobs.c.public_id == job_id)).first()
        if row is None:
            raise NotFound(job_id)
        return _to_job(row)

    def update(self, job_id: str, *, state: str | None = None, progress: float | None = None,
               log: str | None = None, result: dict[str, Any] | None = None, external_id: str | None = None,
               actor: str = "system", only_if_not_terminal: bool = True) -> Job:
        """Change a job's row in one transaction; a state change is audited. A terminal job keeps
        its state (a late message from a killed process does not revive it)."""
        now = _now()
        with self.ws.transaction() as conn:
            row = conn.execute(select(db.jobs).where(db.jobs.c.public_id == job_id)).first()
            if row is None:
                raise NotFound(job_id)
            values: dict[str, Any] = {"updated_at": now}
            if state is not None and not (only_if_not_terminal and row.state in TERMINAL):
                if state not in STATES:
                    raise UsageError(f"unknown job state {state!r}")
                values["state"] = state
                if state == "running" and row.started_at is None:
                    values["started_at"] = now
                if state in TERMINAL:
                    values["ended_at"] = now
                if state != row.state:
                    self.ws.audit.record(actor, f"job.{state}", job_id, {"from": row.state, "label": row.label})
            if progress is not None:
                values["progress"] = max(0.0, min(1.0, float(progress)))
            if log:
                stamp = now[11:19]
                text = (row.log or "") + "".join(f"{stamp} {ln}\n" for ln in log.rstrip("\n").split("\n"))
                values["log"] = text[-MAX_LOG:]
            if result is not None:
                values["result"] = json.dumps(result, sort_keys=True)
            if external_id is not None:
                values["external_id"] = external_id
            conn.execute(db.jobs.update().where(db.jobs.c.id == row.id).values(**values))
        return self.get_raw(job_id)


class Reporter:
    """What a job's payload uses to say how far it got."""

    def __init__(self, store: JobStore, job_id: str, actor: str) -> None:
        self.store, self.job_id, self.actor = store, job_id, actor

    def log(self, message: str, progress: float | None = None) -> None:
        self.store.update(self.job_id, log=message, progress=progress, actor=self.actor)
