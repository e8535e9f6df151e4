"""Training jobs on the local executor: the job survives its submitter, runs as the submitting
user, its model carries the lub of its inputs' labels, its log and state are honest."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from factory_helpers import TINY_CLASSES, TINY_PARAMS, synthetic_dota, wait_state

from casemate.errors import NotFound, PermissionDenied, UsageError
from casemate.factory.datasets import import_dataset
from casemate.factory.jobs import JobStore
from casemate.factory.service import cancel_job
from casemate.factory.submit import submit_training
from casemate.factory.training import parse_time
from casemate.security.labels import format_label


@pytest.fixture
def secret_dataset(ws, tmp_path: Path) -> str:
    sam = ws.acting_user("sam")
    rep = import_dataset(ws, sam, synthetic_dota(tmp_path / "d"), fmt="dota", label="S//ALPHA")
    return rep.dataset.id


def test_local_training_job_makes_a_secret_model_derived_from_its_dataset(ws, secret_dataset: str) -> None:
    sam = ws.acting_user("sam")
    job = submit_training(ws, sam, dataset=secret_dataset, executor="local", classes=list(TINY_CLASSES),
                          **TINY_PARAMS)
    assert job.state == "queued" and format_label(job.label) == "S//ALPHA" and job.external_id
    done = wait_state(ws, job.id, ("completed", "failed"), timeout=180)
    assert done.state == "completed", done.log
    assert "attempt 1" in done.log and "epoch 2/2" in done.log
    model = ws.catalog.get(sam, done.result["model"])
    assert model.kind == "model" and format_label(model.label) == "S//ALPHA"
    assert model.parents == (secret_dataset,) and model.created_by == "sam"  # it ran as sam
    reg = model.metadata["registry"]
    assert reg["taxonomy"] == list(TINY_CLASSES) and reg["inputs"][0]["id"] == secret_dataset
    assert {"model.onnx", "manifest.json", "checkpoint.safetensors"} <= set(reg["files"])
    # the job, its log and its model are hidden from a reader below its label
    dana = ws.acting_user("dana")
    with pytest.raises(NotFound):
        JobStore(ws).get(dana, job.id)
    assert JobStore(ws).list(dana) == []
    with pytest.raises(NotFound):
        ws.catalog.get(dana, model.id)
    actions = [e.action for e in ws.audit.tail(400)]
    assert "job.submit" in actions and "job.running" in actions and "job.completed" in actions


def test_a_job_cannot_read_what_its_submitter_may_not(ws, secret_dataset: str) -> None:
    with pytest.raises(NotFound):
        submit_training(ws, ws.acting_user("dana"), dataset=secret_dataset, executor="local")
    assert JobStore(ws).list(ws.acting_user("admin")) == []


def test_cancel_stops_the_process_and_only_the_submitter_may(ws, secret_dataset: str) -> None:
    sam = ws.acting_user("sam")
    job = submit_training(ws, sam, dataset=secret_dataset, executor="local", classes=list(TINY_CLASSES),
                          **{**TINY_PARAMS, "epochs": 500})
    wait_state(ws, job.id, ("running",), timeout=60)
    ws.users.add(ws.acting_user("admin"), "sid", "S//ALPHA", ["analyst"])
    with pytest.raises(PermissionDenied):
        cancel_job(ws, ws.acting_user("sid"), job.id)
    cancelled = cancel_job(ws, sam, job.id)
    assert cancelled.state == "cancelled"
    import time

    from casemate.factory.executors import LocalExecutor

    deadline = time.monotonic() + 20
    while LocalExecutor().scheduler_state(cancelled) is not None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert LocalExecutor().scheduler_state(cancelled) is None  # the process is gone
    assert JobStore(ws).get_raw(job.id).state == "cancelled"
    with pytest.raises(UsageError, match="already ended"):
        cancel_job(ws, sam, job.id)


def test_a_process_that_dies_silently_is_reported_failed(ws, secret_dataset: str) -> None:
    import os
    import signal

    sam = ws.acting_user("sam")
    job = submit_training(ws, sam, dataset=secret_dataset, executor="local", classes=list(TINY_CLASSES),
                          **{**TINY_PARAMS, "epochs": 500})
    wait_state(ws, job.id, ("running",), timeout=60)
    os.killpg(int(job.external_id.split(":")[0]), signal.SIGKILL)
    failed = wait_state(ws, job.id, ("failed",), timeout=30)
    assert "ended without reporting" in failed.log


def test_cli_train_jobs_ls_show_logs(cm, tmp_path: Path) -> None:
    assert cm("init")[0] == 0
    rc, out, err = cm("dataset", "import", str(synthetic_dota(tmp_path / "d", n=6)), "--format", "dota",
                      "--label", "DR", "--json")
    assert rc == 0, err
    ds = json.loads(out)["dataset"]
    args = ["train", "detector", "--dataset", ds, "--executor", "local", "--classes", ",".join(TINY_CLASSES),
            "--wait", "--json"] + [x for k, v in TINY_PARAMS.items() for x in (f"--{k}", str(v))]
    rc, out, err = cm(*args)
    assert rc == 0, err
    job = json.loads(out)
    assert job["state"] == "completed" and job["label"] == "DR"
    rc, out, _ = cm("jobs", "ls", "--json")
    assert [j["id"] for j in json.loads(out)] == [job["id"]]
    rc, out, _ = cm("jobs", "logs", job["id"])
    assert "epoch 2/2" in out and "registered" in out
    assert cm("user", "add", "nora", "--clearance", "NP")[0] == 0
    rc, out, err = cm("--as", "nora", "jobs", "show", job["id"])
    assert rc == 4 and "no such item" in err
    rc, out, err = cm("models", "ls", "--json")
    assert json.loads(out)[0]["id"] == job["result"]["model"]


def test_bad_submissions_are_refused_before_a_job_exists(ws, secret_dataset: str) -> None:
    sam = ws.acting_user("sam")
    with pytest.raises(UsageError, match="unknown training parameter"):
        submit_training(ws, sam, dataset=secret_dataset, executor="local", epoch=3)
    with pytest.raises(UsageError, match="unknown executor"):
        submit_training(ws, sam, dataset=secret_dataset, executor="cloud")
    assert JobStore(ws).list(sam) == []
    assert parse_time("02:00:00") == 120 and parse_time("1-00:00:00") == 1440 and parse_time("90") == 90
    with pytest.raises(UsageError):
        parse_time("two hours")
