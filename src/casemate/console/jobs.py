"""Long work (transcription, and later detection, pack runs, training) as jobs with progress.

A job runs in a worker thread; the page polls its state. A job belongs to the user who started it
and is visible to nobody else (another user's job id is answered like a missing one), and its result
is a catalog version id, which the page then reads through the catalog like any other.
"""

from __future__ import annotations

import secrets
import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from casemate.errors import CasemateError, NotFound

Progress = Callable[[float], None]


@dataclass
class Job:
    id: str
    owner: str
    kind: str
    target: str | None
    state: str = "queued"  # queued, running, done, failed
    progress: float = 0.0  # 0..1
    result: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    created: float = field(default_factory=time.time)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "target": self.target, "state": self.state,
                "progress": round(self.progress, 3), "result": self.result, "error": self.error,
                "created": self.created}


class JobRunner:
    def __init__(self, workers: int = 1) -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="console-job")
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()

    def submit(self, owner: str, kind: str, target: str | None,
               work: Callable[[Progress], dict[str, Any]]) -> Job:
        job = Job("job-" + secrets.token_hex(6), owner, kind, target)
        with self._lock:
            self._jobs[job.id] = job

        def progress(p: float) -> None:
            job.progress = max(job.progress, min(1.0, float(p)))

        def run() -> None:
            job.state = "running"
            try:
                job.result = work(progress)
                job.progress, job.state = 1.0, "done"
            except CasemateError as exc:
                job.error, job.state = exc.message, "failed"
            except Exception as exc:  # a job must end in a state the page can show, never hang
                traceback.print_exc()
                job.error, job.state = f"{type(exc).__name__}: {exc}", "failed"

        self._pool.submit(run)
        return job

    def get(self, owner: str, job_id: str) -> Job:
        job = self._jobs.get(job_id)
        if job is None or job.owner != owner:
            raise NotFound(job_id)
        return job

    def list(self, owner: str) -> list[Job]:
        with self._lock:
            return sorted((j for j in self._jobs.values() if j.owner == owner), key=lambda j: -j.created)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
