"""Job executors: where a job's process runs. One small interface, two implementations.

- `LocalExecutor`: a detached child process on this machine (survives the CLI's exit).
- `SlurmExecutor`: a Slurm batch job submitted with submitit.

An executor launches, cancels, and says what the scheduler knows about a job. The job's own
process writes its state to the job table; `reconcile` compares the two, so a job whose process
died without a word is reported failed instead of "running" forever. (submitit's own state comes
from `sacct`, which fails without Slurm accounting: we ask `squeue`/`scontrol` instead.)
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from casemate.errors import CasemateError, UsageError
from casemate.factory.jobs import TERMINAL, Job, JobStore

if TYPE_CHECKING:
    from casemate.workspace import Workspace

# How long a job whose batch script ended may take to report its end before it counts as lost.
GRACE_S = 15.0
SLURM_ENDED = ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL",
               "DEADLINE", "PREEMPTED")


class Executor(ABC):
    name: str

    @abstractmethod
    def launch(self, ws: Workspace, job: Job) -> str:
        """Start the job's process; returns the scheduler's id for it."""

    @abstractmethod
    def cancel(self, job: Job) -> None: ...

    @abstractmethod
    def scheduler_state(self, job: Job) -> str | None:
        """RUNNING, PENDING, ... as the scheduler says; None when it no longer knows the job."""


# -- local ---------------------------------------------------------------------------------------
def _proc_start_time(pid: int) -> str | None:
    """The process's start time in clock ticks (with the pid, an identity that survives pid reuse)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    if fields[0] in ("Z", "X"):
        return None  # exited, not yet reaped
    return fields[19]


class LocalExecutor(Executor):
    name = "local"

    def __init__(self, python: str | None = None) -> None:
        self.python = python or sys.executable

    def launch(self, ws: Workspace, job: Job) -> str:
        folder = ws.home / "jobs" / job.id
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / "process.log", "ab") as out:
            proc = subprocess.Popen(
                [self.python, "-m", "casemate.factory.runner", "--home", str(ws.home), job.id],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                close_fds=True)
        _CHILDREN[proc.pid] = proc  # reaped by poll() below, so an exited child is not a zombie
        return f"{proc.pid}:{_proc_start_time(proc.pid) or ''}"

    def _alive(self, job: Job) -> int | None:
        if not job.external_id:
            return None
        pid_s, _, start = job.external_id.partition(":")
        pid = int(pid_s)
        child = _CHILDREN.get(pid)
        if child is not None and child.poll() is not None:
            _CHILDREN.pop(pid, None)
            return None
        now = _proc_start_time(pid)
        return pid if now is not None and (not start or now == start) else None

    def cancel(self, job: Job) -> None:
        pid = self._alive(job)
        if pid is not None:
            try:
                os.killpg(pid, signal.SIGTERM)  # its own session: the job and what it started
            except ProcessLookupError:
                pass

    def scheduler_state(self, job: Job) -> str | None:
        return "RUNNING" if self._alive(job) is not None else None


_CHILDREN: dict[int, subprocess.Popen] = {}


# -- slurm ---------------------------------------------------------------------------------------
def _slurm_env(slurm_conf: str | None) -> dict[str, str]:
    env = dict(os.environ)
    if slurm_conf:
        env["SLURM_CONF"] = slurm_conf
    return env


def _slurm_bin(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path="/usr/bin:/usr/sbin")
    if found is None:
        raise UsageError(f"the Slurm command {name!r} is not installed: install slurm-client, or use --executor local")
    return found


def squeue_state(job_id: str, slurm_conf: str | None = None) -> str | None:
    """The job's state from squeue, else scontrol (jobs that ended recently); None only when the
    controller says it does not know the job. An unreachable or busy controller raises
    SubprocessError: a job is never declared lost on a timeout."""
    env = _slurm_env(slurm_conf)
    out = subprocess.run([_slurm_bin("squeue"), "-h", "-j", job_id, "-o", "%T"], env=env, capture_output=True,
                         text=True, timeout=30)
    state = out.stdout.strip()
    if out.returncode == 0 and state:
        return state.split()[0]
    if out.returncode != 0 and "invalid job id" not in out.stderr.lower():
        raise subprocess.SubprocessError(f"squeue: {out.stderr.strip()}")
    out = subprocess.run([_slurm_bin("scontrol"), "show", "job", "-o", job_id], env=env, capture_output=True,
                         text=True, timeout=30)
    for part in out.stdout.split():
        if part.startswith("JobState="):
            return part.split("=", 1)[1]
    if out.returncode != 0 and "invalid job id" not in out.stderr.lower():
        raise subprocess.SubprocessError(f"scontrol: {out.stderr.strip()}")
    return None


class SlurmExecutor(Executor):
    name = "slurm"

    def __init__(self, folder: Path | None = None, *, slurm_conf: str | None = None, partition: str | None = None,
                 gpus: int | None = None, time_min: int | None = None, cpus_per_task: int = 1,
                 python: str | None = None) -> None:
        self.folder = folder
        self.slurm_conf = slurm_conf or os.environ.get("SLURM_CONF")
        self.partition = partition
        self.gpus = gpus
        self.time_min = time_min
        self.cpus_per_task = cpus_per_task
        self.python = python

    def _executor(self, folder: Path):  # type: ignore[no-untyped-def]
        try:
            import submitit
        except ModuleNotFoundError:
            raise CasemateError("the Slurm executor needs submitit: pip install submitit") from None
        _slurm_bin("sbatch")
        ex = submitit.SlurmExecutor(folder=str(folder), max_num_timeout=3, python=self.python)
        params: dict[str, Any] = {"cpus_per_task": self.cpus_per_task, "time": self.time_min or 60,
                                  "signal_delay_s": 30, "additional_parameters": {"requeue": True}}
        if self.partition:
            params["partition"] = self.partition
        if self.gpus:
            params["gpus_per_node"] = self.gpus
        ex.update_parameters(**params)
        return ex

    def submit_callable(self, fn: Callable[..., Any], *args: Any, folder: Path | None = None) -> str:
        """Submit fn(*args) as a batch job (submitit pickles it); returns the Slurm job id."""
        folder = folder or self.folder
        if folder is None:
            raise UsageError("a Slurm submission needs a folder for its scripts and logs")
        old = os.environ.get("SLURM_CONF")
        if self.slurm_conf:
            os.environ["SLURM_CONF"] = self.slurm_conf  # submitit runs sbatch with this process's env
        try:
            job = self._executor(folder).submit(fn, *args)
        except CasemateError:
            raise
        except Exception as exc:  # sbatch refused (bad partition, time, gpus): say what it said
            raise UsageError(f"Slurm refused the job: {str(exc).strip().splitlines()[-1][:400]}") from None
        finally:
            if self.slurm_conf:
                if old is None:
                    os.environ.pop("SLURM_CONF", None)
                else:
                    os.environ["SLURM_CONF"] = old
        return str(job.job_id)

    def launch(self, ws: Workspace, job: Job) -> str:
        from casemate.factory.runner import run_job

        return self.submit_callable(run_job, str(ws.home), job.id, folder=ws.home / "jobs" / job.id / "slurm")

    def cancel(self, job: Job) -> None:
        if job.external_id:
            subprocess.run([_slurm_bin("scancel"), job.external_id], env=_slurm_env(self.slurm_conf),
                           capture_output=True, timeout=30)

    def scheduler_state(self, job: Job) -> str | None:
        return squeue_state(job.external_id, self.slurm_conf) if job.external_id else None

    def requeue(self, job: Job) -> None:
        """What a preemption does: the job is stopped and goes back to the queue."""
        if job.external_id:
            out = subprocess.run([_slurm_bin("scontrol"), "requeue", job.external_id],
                                 env=_slurm_env(self.slurm_conf), capture_output=True, text=True, timeout=30)
            if out.returncode != 0:
                raise UsageError(f"scontrol requeue {job.external_id}: {out.stderr.strip()}")


def executor_for(ws: Workspace, name: str, **params: Any) -> Executor:
    from casemate.factory.settings import factory_settings

    s = factory_settings(ws)
    if name == "local":
        return LocalExecutor(python=s.python)
    if name == "slurm":
        return SlurmExecutor(slurm_conf=s.slurm_conf, partition=params.get("partition") or s.partition,
                             gpus=params.get("gpus"), time_min=params.get("time_min"),
                             cpus_per_task=params.get("cpus_per_task") or s.cpus_per_task, python=s.python)
    raise UsageError(f"unknown executor {name!r}: use local or slurm")


def _age_s(stamp: str) -> float:
    from datetime import UTC, datetime

    return (datetime.now(UTC) - datetime.fromisoformat(stamp)).total_seconds()


def reconcile(ws: Workspace, job: Job) -> Job:
    """The job's state, corrected by what its scheduler knows (a process that died silently)."""
    if job.state in TERMINAL or not job.external_id:
        return job
    store = JobStore(ws)
    try:
        sched = executor_for(ws, job.executor, **job.spec.get("resources", {})).scheduler_state(job)
    except (UsageError, subprocess.SubprocessError, OSError):
        return job  # scheduler unreachable: report what the job itself last said
    if sched in ("PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED") and job.state == "running":
        return store.update(job.id, state="queued", log=f"back in the queue (scheduler: {sched})")
    if sched is None or sched in SLURM_ENDED:
        fresh = store.get_raw(job.id)  # the process may have reported its end meanwhile
        if fresh.state in TERMINAL:
            return fresh
        if sched == "COMPLETED" and _age_s(fresh.updated_at) < GRACE_S:
            # The batch script ended a moment ago: its last report may still be committing.
            return fresh
        final = "cancelled" if sched == "CANCELLED" else "failed"
        return store.update(job.id, state=final,
                            log=f"the job's process ended without reporting (scheduler: {sched or 'job gone'})")
    return job
