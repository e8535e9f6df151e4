"""Decisions while a mission runs (the API in this process, the CLI from another), and a run's versions
stored in one transaction."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from tests.pack.test_loop import DETECTIONS, _count, _task, ws  # noqa: F401  (ws: the fixture)

from casemate.errors import CasemateError
from casemate.pack import service


def _mission(ws, duration: float = 160) -> tuple[str, str]:  # noqa: F811
    admin = ws.acting_user("admin")
    det = ws.catalog.put(admin, json.dumps(DETECTIONS).encode(), name="img.detections.geojson", kind="detections",
                         label="DR").id
    plan = service.plan_from_detections(ws, admin, det, level="I", robots="quadcopter:2", duration=duration,
                                        rules=[{"class": "tank", "timeout": 10_000, "on_timeout": "wait"}], label="S")
    return det, plan.mission.id


def test_a_failure_while_storing_a_run_stores_none_of_it(ws, tmp_path: Path, monkeypatch) -> None:  # noqa: F811
    admin = ws.acting_user("admin")
    det, mid = _mission(ws, duration=120)
    service.decide(ws, ws.acting_user("olga"), mid, "d0", "approve", "hostile")
    before, audit_before = _count(ws), len(ws.audit.tail(10_000))

    def broken(*_a, **_k):  # the last version of the run (the detections seen better) fails to store
        raise RuntimeError("disk full")

    real = service._upgrade_detections
    monkeypatch.setattr(service, "_upgrade_detections", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        service.run_scenario(ws, admin, mid, out_dir=tmp_path / "a")
    # results, replay and findings had been put before the failure: none of them remains
    assert _count(ws) == before and ws.catalog.list(admin, kind="finding") == []
    added = ws.audit.tail(10_000)[audit_before:]
    assert {e.action for e in added} <= {"read", "list"} and ws.audit.verify().ok  # the run's reads; no write audited
    monkeypatch.setattr(service, "_upgrade_detections", real)
    out = service.run_scenario(ws, admin, mid, out_dir=tmp_path / "b")
    assert {f.metadata["task"] for f in out.findings} == {"d0", "d1"} and len(out.detections) == 1
    assert _count(ws) == before + 2 + 2 + 1  # results, replay, two findings, the new detections version
    assert ws.catalog.get(admin, out.findings[0].id).parents and ws.audit.verify().ok


def test_an_officer_approves_through_the_api_while_the_run_goes_on(ws, tmp_path: Path) -> None:  # noqa: F811
    from fastapi.testclient import TestClient

    from casemate.pack.api import pack_router

    app = FastAPI()

    @app.exception_handler(CasemateError)
    async def err(_: Request, exc: CasemateError) -> JSONResponse:
        return JSONResponse({"error": exc.message}, status_code=exc.http_status)

    def who(request: Request):  # the server's bearer-token dependency stands here
        return ws.acting_user(request.headers["x-user"])

    app.include_router(pack_router(ws, who))
    client = TestClient(app)
    _, mid = _mission(ws, duration=160)
    started, box = threading.Event(), {}

    def run() -> None:
        try:
            box["out"] = service.run_scenario(ws, ws.acting_user("admin"), mid, out_dir=tmp_path / "r", pace=40,
                                              poll_s=0.1, start=lambda sc: started.set())
        except BaseException as exc:  # surfaces in the test below
            box["err"] = exc
            started.set()

    th = threading.Thread(target=run)
    th.start()
    assert started.wait(60)
    r = client.post(f"/api/pack/missions/{mid}/tasks/d0/approve", json={"reason": "confirmed hostile"},
                    headers={"x-user": "olga"})
    assert r.status_code == 200, r.text
    th.join(120)
    assert "err" not in box, box.get("err")
    res = box["out"].result
    gate = next(d for d in res.decisions if d["task"] == "d0")
    # read during the run (not before it), and acted on only after it arrived
    assert gate["gate"] == "approved" and gate["by"] == "olga" and gate["reason"] == "confirmed hostile"
    assert 0 < gate["t"] < 160
    assert _task(res, "d0")["done_at"] is not None and _task(res, "d0")["done_at"] >= gate["t"]
    assert "d0" in {f.metadata["task"] for f in box["out"].findings}
    with pytest.raises(CasemateError, match="--pace"):
        service.run_scenario(ws, ws.acting_user("admin"), mid, out_dir=tmp_path / "x", pace=0)


@pytest.mark.slow  # two CLI processes at once
def test_cli_reject_from_another_process_while_the_run_goes_on(ws, tmp_path: Path, home: Path) -> None:  # noqa: F811
    # 300 simulated s at 15 per s: 20 s of wall time (sleeping, mostly) for the other process to start
    # and decide on a loaded machine
    _, mid = _mission(ws, duration=300)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cli = [sys.executable, "-m", "casemate.cli", "--home", str(home)]
    run = subprocess.Popen([*cli, "--as", "admin", "pack", "run", mid, "--out", str(tmp_path / "r"), "--quiet",
                            "--pace", "15", "--poll", "0.2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           env=env, cwd=tmp_path)
    try:
        first = run.stdout.readline()
        assert "running at 15 simulated s per s" in first, first + run.stderr.read()
        res = subprocess.run([*cli, "--as", "olga", "pack", "reject", mid, "d0", "--reason", "a school bus"],
                             capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
        assert res.returncode == 0, res.stderr
        out, errs = run.communicate(timeout=180)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 0, errs
    line = next((x for x in out.splitlines() if x.startswith("task d0 rejected at t=")), out)
    t = float(line.split("t=", 1)[1].split(" ", 1)[0])
    assert 0 < t < 300 and "by olga: a school bus" in line, out
    findings = [x for x in out.splitlines() if x.startswith("finding ")]
    assert findings and all("task d0 " not in x for x in findings)
    entry = next(e for e in reversed(ws.audit.tail(100)) if e.action == "pack.reject")
    assert entry.actor == "olga" and entry.detail["reason"] == "a school bus"
