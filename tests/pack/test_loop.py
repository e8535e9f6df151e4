"""The pack in the loop: missions planned from stored detections, findings back in the catalog with
their lineage, an officer's approvals, and nothing stored when the input is bad."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from fastapi import Request
from fastapi.responses import JSONResponse

from casemate.errors import CasemateError, NotFound, PermissionDenied, UsageError
from casemate.pack import service
from casemate.pack.approvals import Decision
from casemate.pack.scenario import parse_scenario
from casemate.pack.sim import Simulation


def _box(lon: float, lat: float, d: float = 0.00004) -> dict:
    ring = [[lon - d, lat - d], [lon + d, lat - d], [lon + d, lat + d], [lon - d, lat + d], [lon - d, lat - d]]
    return {"type": "Polygon", "coordinates": [ring]}


DETECTIONS = {"type": "FeatureCollection", "coordinates": "wgs84", "features": [
    {"type": "Feature", "geometry": _box(-4.4950, 48.3850),
     "properties": {"label": "tank", "dri_level": "D", "johnson_ceiling": "D", "gsd_m": 1.2, "width_m": 3.5}},
    {"type": "Feature", "geometry": _box(-4.4930, 48.3860),
     "properties": {"label": "truck", "dri_level": "R", "johnson_ceiling": "R", "gsd_m": 0.6, "width_m": 2.5}},
    {"type": "Feature", "geometry": _box(-4.4940, 48.3845),
     "properties": {"label": "truck", "dri_level": "I", "johnson_ceiling": "I", "gsd_m": 0.1, "width_m": 2.5}},
]}


@pytest.fixture
def ws(home: Path):
    from casemate.workspace import Workspace

    with Workspace.init(home) as w:
        admin = w.acting_user("admin")
        w.users.add(admin, "olga", clearance="S", roles=["officer"])
        w.users.add(admin, "nora", clearance="NP", roles=["analyst"])
        w.users.add(admin, "sam", clearance="S", roles=["analyst"])
        yield w


def _detections(ws, label: str = "DR") -> str:
    v = ws.catalog.put(ws.acting_user("admin"), json.dumps(DETECTIONS).encode(), name="img.detections.geojson",
                       kind="detections", label=label)
    return v.id


def _count(ws) -> int:
    admin = ws.acting_user("admin")
    return sum(len(ws.catalog.list(admin, kind=k, limit=500)) for k in ("mission", "telemetry", "finding", "detections"))


def test_plan_from_detections_run_findings_lineage(ws, tmp_path: Path) -> None:
    admin = ws.acting_user("admin")
    det = _detections(ws, "DR")
    plan = service.plan_from_detections(ws, admin, det, level="I", robots="quadcopter:3", duration=240, label="S")
    # the two the imagery could not identify become tasks; the identified one does not
    assert [t["task"] for t in plan.tasks] == ["d0", "d1"]
    assert str(plan.mission.label) == "S" and plan.mission.parents == (det,)
    assert plan.scenario.lonlat_origin is not None
    out = service.run_scenario(ws, admin, plan.mission.id, out_dir=tmp_path / "run")
    assert out.plan.id == plan.mission.id and out.results.parents == (plan.mission.id,)
    assert {f.metadata["task"] for f in out.findings} == {"d0", "d1"}
    for f in out.findings:
        assert f.kind == "finding" and str(f.label) == "S" and set(f.parents) == {det, plan.mission.id}
        body = json.loads(ws.catalog.read_bytes(admin, f.id))
        assert body["level"] == "I" and body["robot_type"] == "quadcopter"
        assert body["gsd_m"] > 0 and body["range_m"] <= body["sensor_range_m"]
        assert abs(body["target_lonlat"][0] - body["detection"]["lonlat"][0]) < 1e-6
        # lineage: finding -> detections (-> its image) and finding -> mission -> detections
        lin = ws.catalog.lineage(admin, f.id)
        ids = json.dumps(lin)
        assert det in ids and plan.mission.id in ids
    # the detections seen at a better level: a new version of the same asset, the old one untouched
    assert len(out.detections) == 1
    new = out.detections[0]
    old = ws.catalog.get(admin, det)
    assert new.asset_id == old.asset_id and new.id != det and str(new.label) == "S"
    feats = json.loads(ws.catalog.read_bytes(admin, new.id))["features"]
    assert [f["properties"]["dri_level"] for f in feats] == ["I", "I", "I"]
    assert feats[0]["properties"]["dri_level_imagery"] == "D" and "confirmed_by" in feats[0]["properties"]
    assert json.loads(ws.catalog.read_bytes(admin, det))["features"][0]["properties"]["dri_level"] == "D"
    gj = json.loads(out.paths["findings"].read_text())
    assert len(gj["features"]) == 2 and gj["features"][0]["geometry"]["type"] == "Point"
    # a reader below S sees none of it
    nora = ws.acting_user("nora")
    assert ws.catalog.list(nora, kind="finding") == []


def test_plan_refuses_bad_input_and_stores_nothing(ws) -> None:
    admin = ws.acting_user("admin")
    det = _detections(ws)
    before = _count(ws)
    for kwargs, words in [({"level": "X"}, "--level"), ({"robots": "submarine:2"}, "submarine"),
                          ({"area": "1,2,3"}, "--area"), ({"label": "NP"}, "below"),
                          ({"rules": [{"class": "tank", "on_timeout": "explode"}]}, "approvals[0].on_timeout")]:
        with pytest.raises(UsageError) as err:
            service.plan_from_detections(ws, admin, det, **kwargs)
        assert words in err.value.message
    with pytest.raises(UsageError, match="no detection below level D"):
        service.plan_from_detections(ws, admin, det, level="D")
    assert _count(ws) == before


def test_run_validates_everything_first_and_stores_nothing(ws, harbour: dict, tmp_path: Path) -> None:
    import yaml

    admin, nora = ws.acting_user("admin"), ws.acting_user("nora")
    harbour["duration"] = 5
    scen = tmp_path / "h.yaml"
    scen.write_text(yaml.safe_dump(harbour))
    (tmp_path / "afile").write_text("x")
    before = _count(ws)
    cases = [(admin, {"out_dir": tmp_path / "afile"}, "not a folder"),
             (admin, {"label": "NOPE"}, "label"),
             (nora, {"label": "TS"}, "above your clearance"),
             (admin, {"out_dir": tmp_path / "o"}, None)]
    harbour_bad = dict(harbour, label="S")
    scen_s = tmp_path / "s.yaml"
    scen_s.write_text(yaml.safe_dump(harbour_bad))
    for user, kw, words in cases[:3]:
        with pytest.raises(UsageError) as err:
            service.run_scenario(ws, user, scen, **{"out_dir": tmp_path / "o", **kw})
        assert words in err.value.message
    with pytest.raises(UsageError, match="below the scenario's label"):
        service.run_scenario(ws, admin, scen_s, out_dir=tmp_path / "o", label="NP")
    with pytest.raises(NotFound, match="no scenario file"):
        service.run_scenario(ws, admin, "no-such-mission", out_dir=tmp_path / "o")
    assert _count(ws) == before and not (tmp_path / "o").exists()
    out = service.run_scenario(ws, admin, scen, out_dir=tmp_path / "o", label="DR")
    assert str(out.plan.label) == "DR" and _count(ws) == before + 3


# ------------------------------------------------------------------------------------------ approvals
def _gated(rules: list[dict], n_robots: int = 2) -> dict:
    return {
        "name": "gated",
        "area": {"polygon": [[0, 0], [1200, 0], [1200, 800], [0, 800]]},
        "terrain": {"cell": 20, "default": "land"},
        "robots": [{"type": "quadcopter", "count": n_robots, "start": [600, 400], "role": "tasks"}],
        "targets": [{"id": "near", "position": [700, 420], "level": "I", "class": "tank"},
                    {"id": "b", "position": [300, 200], "level": "I", "class": "truck"},
                    {"id": "c", "position": [900, 650], "level": "I", "class": "truck"}],
        "objectives": {"search": False, "visit": True},
        "approvals": rules,
        "duration": 150,
    }


def _task(res, tid: str) -> dict:
    return next(t for t in res.tasks if t["task"] == tid)


def test_marked_task_never_acted_on_without_approval_the_rest_goes_on() -> None:
    sc = parse_scenario(_gated([{"class": "tank"}]), "gated.yaml")
    sim = Simulation(sc, 1)
    j = int(np.flatnonzero(sim.task_target == 0)[0])
    held = False
    for _ in range(sc.steps):
        sim.step()
        assert sim.executions[j] == 0
        held |= bool((sim._view.path == j).any())
    res = sim.run()
    assert held  # a robot was allocated it and waited: it still did not act
    assert _task(res, "near")["gate"] == "waiting" and _task(res, "near")["executions"] == 0
    assert _task(res, "b")["done_at"] is not None and _task(res, "c")["done_at"] is not None


def test_approval_lets_robots_act_rejection_frees_them() -> None:
    sc = parse_scenario(_gated([{"class": "tank", "level": "R"}], n_robots=1), "gated.yaml")
    ok = Simulation(sc, 1, decisions=[Decision("near", "approve", at=20.0, by="olga", reason="hostile")]).run()
    assert _task(ok, "near")["done_at"] is not None and _task(ok, "near")["done_at"] >= 20.0
    assert ok.decisions[0]["gate"] == "approved" and ok.decisions[0]["by"] == "olga"
    # one robot: the near task stays in its path while it waits (it does the others meanwhile, and
    # then waits there); a rejection takes it out: the robot is free
    sim = Simulation(sc, 1, decisions=[Decision("near", "reject", at=30.0, by="olga", reason="civilian")])
    j = int(np.flatnonzero(sim.task_target == 0)[0])
    while sim.t < 29.0:
        sim.step()
    assert (sim._view.path == j).any() and sim.executions[j] == 0
    while sim.t < 31.0:
        sim.step()
    assert not (sim.cbba.path == j).any() and not (sim._view.path == j).any()
    res = sim.run()
    assert _task(res, "near")["gate"] == "rejected" and _task(res, "near")["executions"] == 0
    assert _task(res, "b")["done_at"] is not None and _task(res, "c")["done_at"] is not None
    wait = Simulation(sc, 1).run()
    assert _task(wait, "near")["executions"] == 0 and _task(wait, "b")["done_at"] is not None


def test_timeout_rule_drop_or_keep_waiting() -> None:
    drop = Simulation(parse_scenario(_gated([{"class": "tank", "timeout": 25, "on_timeout": "drop"}], 1), "g.yaml"), 1).run()
    assert _task(drop, "near")["gate"] == "dropped" and drop.decisions[0]["by"] == "timeout"
    assert _task(drop, "near")["executions"] == 0 and any(t["done_at"] for t in drop.tasks)
    keep = Simulation(parse_scenario(_gated([{"class": "tank", "timeout": 25, "on_timeout": "wait"}], 1), "g.yaml"), 1).run()
    assert _task(keep, "near")["gate"] == "waiting" and _task(keep, "near")["executions"] == 0


def test_approve_reject_through_the_service_audited(ws, tmp_path: Path) -> None:
    admin, olga, sam = ws.acting_user("admin"), ws.acting_user("olga"), ws.acting_user("sam")
    det = _detections(ws, "DR")
    plan = service.plan_from_detections(ws, admin, det, level="I", robots="quadcopter:2", duration=200,
                                        rules=[{"class": "tank"}], label="S")
    mid = plan.mission.id
    assert [t["task"] for t in plan.tasks if t["marked"]] == ["d0"]
    with pytest.raises(UsageError, match="--reason"):
        service.decide(ws, olga, mid, "d0", "approve", "  ")
    with pytest.raises(PermissionDenied):
        service.decide(ws, sam, mid, "d0", "approve", "ok")
    with pytest.raises(UsageError, match="needs no approval"):
        service.decide(ws, olga, mid, "d1", "approve", "ok")
    with pytest.raises(UsageError, match="no task"):
        service.decide(ws, olga, mid, "zz", "approve", "ok")
    # before any decision: the marked one is not acted on, no finding for it
    first = service.run_scenario(ws, admin, mid, out_dir=tmp_path / "a")
    assert {f.metadata["task"] for f in first.findings} == {"d1"}
    assert _task(first.result, "d0")["gate"] == "waiting"
    v = service.decide(ws, olga, mid, "d0", "reject", "a school bus, not a tank")
    assert v.parents == (mid,) and str(v.label) == "S"
    with pytest.raises(UsageError, match="already rejected"):
        service.decide(ws, olga, mid, "d0", "approve", "changed my mind")
    entry = next(e for e in reversed(ws.audit.tail(50)) if e.action == "pack.reject")
    assert entry.actor == "olga" and entry.target == mid and entry.detail["reason"] == "a school bus, not a tank"
    rows = service.mission_tasks(ws, admin, mid)
    assert rows[0]["decision"] == "reject" and rows[0]["by"] == "olga"
    second = service.run_scenario(ws, admin, mid, out_dir=tmp_path / "b")
    assert _task(second.result, "d0")["gate"] == "rejected" and _task(second.result, "d0")["executions"] == 0
    assert ws.audit.verify().ok


@pytest.mark.slow  # five CLI processes
def test_cli_plan_approve_run(ws, tmp_path: Path, home: Path) -> None:
    import os
    import subprocess
    import sys

    det = _detections(ws, "DR")
    rules = tmp_path / "rules.yaml"
    rules.write_text("- {class: tank, timeout: 600, on_timeout: wait}\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "casemate.cli", "--home", str(home), *args], capture_output=True,
                              text=True, env=env, cwd=tmp_path, timeout=300)

    res = cli("--as", "admin", "pack", "plan", "--from-detections", det, "--robots", "quadcopter:2", "--rules", str(rules),
              "--duration", "120", "--json")
    assert res.returncode == 0, res.stderr
    mid = json.loads(res.stdout)["mission"]["id"]
    res = cli("--as", "olga", "pack", "approve", mid, "d0")
    assert res.returncode == 2 and "--reason" in res.stderr
    res = cli("--as", "olga", "pack", "approve", mid, "d0", "--reason", "confirmed hostile")
    assert res.returncode == 0 and "approved task d0" in res.stdout, res.stderr
    res = cli("--as", "admin", "pack", "tasks", mid)
    assert "approved by olga: confirmed hostile" in res.stdout
    res = cli("--as", "admin", "pack", "run", mid, "--out", str(tmp_path / "r"), "--quiet")
    assert res.returncode == 0, res.stderr
    assert "finding" in res.stdout and "detections updated" in res.stdout


def test_replay_draws_the_image_the_mission_came_from(ws, tmp_path: Path) -> None:
    import rasterio
    from rasterio.transform import from_bounds

    admin = ws.acting_user("admin")
    tif = tmp_path / "scene.tif"
    w, s, e, n = -4.4960, 48.3840, -4.4920, 48.3870
    with rasterio.open(tif, "w", driver="GTiff", width=64, height=48, count=3, dtype="uint8", crs="EPSG:4326",
                       transform=from_bounds(w, s, e, n, 64, 48)) as ds:
        ds.write(np.random.default_rng(0).integers(0, 255, (3, 48, 64), dtype=np.uint8))
    image = ws.catalog.put(admin, tif, name="scene.tif", kind="image", label="DR")
    det = ws.catalog.put(admin, json.dumps(DETECTIONS).encode(), name="scene.detections.geojson", kind="detections",
                         label="DR", parents=[image.id])
    plan = service.plan_from_detections(ws, admin, det.id, level="R", robots="quadcopter:1", duration=5)
    out = service.run_scenario(ws, admin, plan.mission.id, out_dir=tmp_path / "run")
    html = out.paths["html"].read_text()
    assert '"png":"data:image/png;base64,' in html
    raster = json.loads(html.split("const DATA = ", 1)[1].split(";\n", 1)[0])["header"]["raster"]
    x0, y0, x1, y1 = raster["extent"]
    assert (x0, y0) == pytest.approx(out.scenario.from_lonlat((w, s)), abs=0.5)
    assert (x1, y1) == pytest.approx(out.scenario.from_lonlat((e, n)), abs=0.5)
    assert '"raster"' not in out.paths["replay"].read_text()  # the JSON lines stay lean


def test_http_face_calls_the_same_services(ws) -> None:
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from casemate.pack.api import pack_router

    app = FastAPI()

    @app.exception_handler(CasemateError)
    async def err(_: Request, exc: CasemateError) -> JSONResponse:  # the server's mapping: status from the class
        return JSONResponse({"error": exc.message}, status_code=exc.http_status)

    def who(request: Request):  # the server's bearer-token dependency stands here
        return ws.acting_user(request.headers["x-user"])

    app.include_router(pack_router(ws, who))
    client = TestClient(app)
    det = _detections(ws, "DR")
    r = client.post("/api/pack/missions", json={"detections": det, "robots": "quadcopter:2", "duration": 60,
                                                "rules": [{"class": "tank"}]}, headers={"x-user": "admin"})
    assert r.status_code == 200, r.text
    mid = r.json()["mission"]["id"]
    r = client.post(f"/api/pack/missions/{mid}/tasks/d0/approve", json={"reason": "hostile"}, headers={"x-user": "sam"})
    assert r.status_code == 403
    r = client.post(f"/api/pack/missions/{mid}/tasks/d0/approve", json={"reason": "hostile"}, headers={"x-user": "olga"})
    assert r.status_code == 200 and r.json()["decision"]["metadata"]["decision"] == "approve"
    r = client.get(f"/api/pack/missions/{mid}/tasks", headers={"x-user": "nora"})  # NP: the DR mission is hidden
    assert r.status_code == 404
    r = client.post("/api/pack/missions", json={"detections": det, "level": "Q"}, headers={"x-user": "admin"})
    assert r.status_code == 400 and "--level" in r.json()["error"]
    r = client.post("/api/pack/runs", json={"mission": mid}, headers={"x-user": "admin"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["plan"]["id"] == mid and {t["task"]: t["gate"] for t in body["tasks"]}["d0"] == "approved"
