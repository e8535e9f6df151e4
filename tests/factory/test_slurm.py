"""Training jobs on a real Slurm cluster (submitit): state read honestly without accounting,
requeue on preemption resumes from the checkpoint, submission to running is fast."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from factory_helpers import TINY_CLASSES, TINY_PARAMS, synthetic_dota, wait_state

from casemate.factory.datasets import import_dataset
from casemate.factory.executors import SlurmExecutor, squeue_state
from casemate.factory.jobs import JobStore
from casemate.factory.submit import submit_training
from casemate.security.labels import format_label

pytestmark = pytest.mark.slow


@pytest.fixture
def dataset(ws, tmp_path: Path) -> str:
    rep = import_dataset(ws, ws.acting_user("sam"), synthetic_dota(tmp_path / "d"), fmt="dota", label="S//ALPHA")
    return rep.dataset.id


def test_slurm_job_trains_and_registers_a_model(ws, dataset: str, slurm) -> None:
    sam = ws.acting_user("sam")
    t0 = time.monotonic()
    job = submit_training(ws, sam, dataset=dataset, executor="slurm", classes=list(TINY_CLASSES), time="00:10:00",
                          **TINY_PARAMS)
    assert job.executor == "slurm" and job.external_id and job.external_id.isdigit()
    while squeue_state(job.external_id) not in ("RUNNING", "COMPLETING", "COMPLETED"):
        assert time.monotonic() - t0 < 10, f"not running after 10 s: {squeue_state(job.external_id)}"
        time.sleep(0.05)
    to_running = time.monotonic() - t0
    done = wait_state(ws, job.id, ("completed", "failed"), timeout=180)
    assert done.state == "completed", done.log
    assert f"slurm job {job.external_id}" in done.log
    model = ws.catalog.get(sam, done.result["model"])
    assert format_label(model.label) == "S//ALPHA" and model.parents == (dataset,)
    assert to_running < 5.0  # measured ~1-2 s on an idle machine; see docs/benchmarks.md


def test_requeue_resumes_from_the_checkpoint(ws, dataset: str, slurm) -> None:
    EPOCHS = 400  # noqa: N806  (80 tiny epochs took under a second on a fast VM: done before the requeue)
    sam = ws.acting_user("sam")
    job = submit_training(ws, sam, dataset=dataset, executor="slurm", classes=list(TINY_CLASSES),
                          **{**TINY_PARAMS, "epochs": EPOCHS})
    wait_state(ws, job.id, ("running",), timeout=60, what=lambda j: f"epoch 2/{EPOCHS}" in j.log)
    SlurmExecutor().requeue(job)
    requeued = wait_state(ws, job.id, ("queued", "running"), timeout=60, what=lambda j: "attempt 2" in j.log)
    assert requeued.external_id == job.external_id
    done = wait_state(ws, job.id, ("completed", "failed"), timeout=240)
    assert done.state == "completed", done.log
    log = done.log
    resumed_at = int(log.split("resuming from the checkpoint after epoch ")[1].split()[0])
    assert resumed_at >= 2
    assert log.count(f"epoch 1/{EPOCHS}") == 1 and f"epoch {EPOCHS}/{EPOCHS}" in log
    if resumed_at < EPOCHS:  # the kill may land after the last epoch on a slow machine: then it only exports
        assert f"epoch {resumed_at + 1}/{EPOCHS}" in log
    assert done.result["model"]
    assert JobStore(ws).get_raw(job.id).state == "completed"


def test_a_slurm_job_cancelled_with_scancel_is_reported_cancelled(ws, dataset: str, slurm) -> None:
    import os
    import subprocess

    sam = ws.acting_user("sam")
    job = submit_training(ws, sam, dataset=dataset, executor="slurm", classes=list(TINY_CLASSES),
                          **{**TINY_PARAMS, "epochs": 500})
    wait_state(ws, job.id, ("running",), timeout=60)
    subprocess.run(["scancel", job.external_id], env={**os.environ, **slurm.env}, check=True)
    gone = wait_state(ws, job.id, ("cancelled", "failed"), timeout=60)
    assert gone.state == "cancelled" and "scheduler: CANCELLED" in gone.log
