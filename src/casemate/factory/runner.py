"""The process a job runs in, whatever the executor: `python -m casemate.factory.runner --home H JOB`.

It opens the workspace, acts as the job's submitter (reads go through the read policy as that
user), marks the job running, runs the job's kind, and records the result or the error in the
job table. Run again on the same job (a requeue after preemption), it resumes from the job's
checkpoint.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from casemate.errors import CasemateError
from casemate.factory.jobs import TERMINAL, Job, JobStore, Reporter
from casemate.security.policy import User

if TYPE_CHECKING:
    from casemate.workspace import Workspace


def _train_detector(ws: Workspace, user: User, job: Job, rep: Reporter) -> dict[str, Any]:
    from casemate.factory.training import train_detector

    return train_detector(ws, user, job, rep)


def _train_advisor(ws: Workspace, user: User, job: Job, rep: Reporter) -> dict[str, Any]:
    from casemate.factory.advisor import train_advisor

    rep.log(f"training the label advisor on the {job.spec['kind']}s {user.name} may read")
    res = train_advisor(ws, user, kind=job.spec["kind"], holdout=job.spec["holdout"], seed=job.spec["seed"],
                        job_id=job.id)
    rep.log(f"held-out: {json.dumps(res['metrics'])}")
    return res


KINDS: dict[str, Callable[..., dict[str, Any]]] = {"train-detector": _train_detector,
                                                   "train-label-advisor": _train_advisor}


def run_job(home: str, job_id: str) -> dict[str, Any] | None:
    from casemate.workspace import Workspace

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    ws = Workspace.open(home)
    store = JobStore(ws)
    try:
        job = store.get_raw(job_id)
        if job.state in TERMINAL:
            return job.result
        attempts_file = ws.home / "jobs" / job_id / "attempts"
        attempts_file.parent.mkdir(parents=True, exist_ok=True)
        attempt = int(attempts_file.read_text() or 0) + 1 if attempts_file.exists() else 1
        attempts_file.write_text(str(attempt))
        user = ws.acting_user(job.submitted_by)
        where = os.environ.get("SLURM_JOB_ID")
        store.update(job_id, state="running", actor=user.name,
                     log=f"attempt {attempt} on {socket.gethostname()} pid {os.getpid()}"
                     + (f" (slurm job {where})" if where else ""))
        result = KINDS[job.kind](ws, user, job, Reporter(store, job_id, user.name))
        store.update(job_id, state="completed", progress=1.0, result=result, log="completed", actor=user.name)
        return result
    except CasemateError as exc:
        store.update(job_id, state="failed", log=f"error: {exc.message}")
        return None
    except BaseException as exc:
        tail = "".join(traceback.format_exception(exc)[-6:])
        store.update(job_id, state="failed", log=f"internal error: {type(exc).__name__}: {exc}\n{tail}")
        raise
    finally:
        ws.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="casemate.factory.runner")
    ap.add_argument("--home", required=True)
    ap.add_argument("job_id")
    args = ap.parse_args(argv)
    return 0 if run_job(args.home, args.job_id) is not None else 1


if __name__ == "__main__":
    sys.exit(main())
