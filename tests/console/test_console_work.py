"""The console's API for the work pages: list filters in SQL, upload names, imagery compare, the
robot pack (plan, approvals, run, replay, results) and the model factory, under the read policy."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from console_fakes import CANARY, PASSWORDS


def login(console: dict[str, Any], name: str) -> httpx.Client:
    c = httpx.Client(base_url=console["url"] + "/console/api", timeout=60)
    r = c.post("/login", json={"username": name, "password": PASSWORDS[name]})
    assert r.status_code == 200, r.text
    c.headers["X-CSRF-Token"] = r.json()["csrf"]
    return c


def finish(c: httpx.Client, job: dict[str, Any], seconds: float = 120) -> dict[str, Any]:
    end = time.monotonic() + seconds
    while job["state"] not in ("done", "failed") and time.monotonic() < end:
        time.sleep(0.2)
        job = c.get(f"/jobs/{job['id']}").json()["job"]
    return job


# -- list filters ---------------------------------------------------------------------------------
def test_list_filters_run_in_sql_and_combine(console: dict[str, Any]) -> None:
    ws = console["ws"]
    dora = ws.acting_user("dora")
    for i in range(3):
        ws.catalog.put(dora, f"ligne {i}".encode(), name=f"filtre_100%-{i}.txt", kind="document", label="DR")
    ws.catalog.put(dora, b"autre", name="filtreX100Y-9.txt", kind="document", label="DR")
    c = login(console, "dora")
    # LIKE's own wildcards are taken literally: "_" and "%" match only themselves
    names = [v["name"] for v in c.get("/items", params={"name": "FILTRE_100%"}).json()["items"]]
    assert names == ["filtre_100%-2.txt", "filtre_100%-1.txt", "filtre_100%-0.txt"]
    # paging through a filtered list by cursor
    p1 = c.get("/items", params={"name": "filtre_100", "limit": 2}).json()
    p2 = c.get("/items", params={"name": "filtre_100", "limit": 2, "before": p1["next"]}).json()
    assert [v["name"] for v in p1["items"] + p2["items"]] == names and p2["next"] is None
    # kind, label and dates together
    today = time.strftime("%Y-%m-%d", time.gmtime())
    got = c.get("/items", params={"kind": "document", "label": "DR", "name": "filtre", "since": today}).json()
    assert len(got["items"]) == 4 and got["label"] == "DR"
    assert c.get("/items", params={"name": "filtre", "until": today}).json()["items"] == []
    # a readable label that matches nothing, and a label above the reader: nothing, no error
    assert c.get("/items", params={"label": "S", "name": "a"}).json()["items"] == []
    r = c.get("/items", params={"since": "mardi"})
    assert r.status_code == 400 and "since" in r.json()["error"]["message"]
    # a hidden version as the cursor is answered like a missing one
    hidden = c.get("/items", params={"name": "x", "before": console["ids"]["secret"]})
    assert hidden.status_code == 404 and hidden.json()["error"]["message"] == f"no such item: {console['ids']['secret']}"


def test_filtered_list_finds_rows_past_any_scan_window(console: dict[str, Any],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The old console filtered in Python over at most 5,000 rows per request: an old match behind
    6,000 newer versions came back as an empty page. In SQL it is found at once."""
    from sqlalchemy import func, select

    from casemate.catalog.models import new_id
    from casemate.store import db

    ws = console["ws"]
    dora = ws.acting_user("dora")
    old = ws.catalog.put(dora, b"ancien", name="aiguille-ancienne.txt", kind="document", label="DR")
    # 6,000 newer rows straight into the tables (as the benchmark builds its catalog): fast to make
    with ws.transaction() as conn:
        lid = conn.execute(select(db.labels.c.id).where(db.labels.c.text == "DR")).scalar_one()
        a0 = conn.execute(select(func.max(db.assets.c.id))).scalar_one() + 1
        v0 = conn.execute(select(func.max(db.versions.c.id))).scalar_one() + 1
        conn.execute(db.assets.insert(), [{"id": a0 + i, "public_id": new_id(), "source_key": None,
                                           "created_at": old.created_at} for i in range(6000)])
        conn.execute(db.versions.insert(), [
            {"id": v0 + i, "public_id": new_id(), "asset_id": a0 + i, "label_id": lid, "sha256": old.sha256,
             "size": old.size, "kind": "document", "name": f"foin-{i}.txt", "source_path": None,
             "created_by": "dora", "created_at": old.created_at, "metadata": "{}"} for i in range(6000)])
    c = login(console, "dora")
    got = c.get("/items", params={"name": "aiguille-anc"}).json()
    assert [v["id"] for v in got["items"]] == [old.id]
    # with a small window the same search takes several calls, each handing back an opaque cursor
    from casemate.console import queries

    monkeypatch.setattr(queries, "WINDOW", 1000)
    pages, cursor, found = 0, None, []
    while True:
        got = c.get("/items", params={"name": "aiguille-anc", **({"before": cursor} if cursor else {})}).json()
        pages += 1
        found += [v["id"] for v in got["items"]]
        cursor = got["next"]
        if cursor is None:
            break
        assert cursor.startswith("~") and len(cursor) == 23  # says nothing of where it is
    assert found == [old.id] and pages >= 6
    bad = c.get("/items", params={"name": "x", "before": "~AAAAAAAAAAAAAAAAAAAAAA"})
    assert bad.status_code == 400 and "cursor" in bad.json()["error"]["message"]


def test_upload_keeps_the_file_name_and_a_new_upload_is_a_new_version(console: dict[str, Any]) -> None:
    ws = console["ws"]
    c = login(console, "dora")
    name = "Compte rendu été 2026.txt"
    r1 = c.post("/upload", data={"label": "DR"}, files=[("files", (name, b"Premier jet.", "text/plain"))]).json()
    item = r1["results"][0]["item"]
    stored = ws.catalog.get(ws.acting_user("dora"), item["id"])
    assert stored.name == name and "upload-" not in (stored.source_path or "")
    assert Path(stored.source_path).name == name and "uploads" in stored.source_path
    same = c.post("/upload", data={"label": "DR"}, files=[("files", (name, b"Premier jet.", "text/plain"))]).json()
    assert same["results"][0] == {"file": name, "ok": True, "skipped": True}
    r2 = c.post("/upload", data={"label": "DR"}, files=[("files", (name, b"Version finale.", "text/plain"))]).json()
    assert r2["results"][0]["item"]["asset_id"] == item["asset_id"] and r2["results"][0]["item"]["id"] != item["id"]
    # a lower label than the asset's: refused for that file, like `casemate ingest`
    low = c.post("/upload", data={"label": "NP"}, files=[("files", (name, b"Autre.", "text/plain"))]).json()
    assert not low["results"][0]["ok"] and "lower label" in low["results"][0]["error"]
    assert "/" not in low["results"][0]["error"].split("lower label")[0].replace("//", "")
    # another user's upload of the same name is their own asset
    other = login(console, "olga").post("/upload", data={"label": "DR"},
                                        files=[("files", (name, b"Premier jet.", "text/plain"))]).json()
    assert other["results"][0]["item"]["asset_id"] != item["asset_id"]
    bad = c.post("/upload", data={"label": "DR"}, files=[("files", ("a.txt", b"1", "text/plain")),
                                                        ("files", ("a.txt", b"2", "text/plain"))])
    assert bad.status_code == 400 and "same name" in bad.json()["error"]["message"]


# -- imagery compare ------------------------------------------------------------------------------
def test_compare_is_a_job_with_a_zone_table_and_a_change_layer(console: dict[str, Any]) -> None:
    ids = console["ids"]
    c = login(console, "dora")
    job = c.post("/imagery/compare", json={"before": ids["geo1"], "after": ids["geo2"], "zones": ids["zones"]}).json()
    job = finish(c, job["job"])
    assert job["state"] == "done", job["error"]
    ch = c.get(f"/items/{job['result']['item']}/change").json()
    assert ch["label"] == "DR" and ch["before"] == ids["geo1"] and ch["after"] == ids["geo2"]
    total = {k: sum(r[k] for r in ch["rows"] if r["class"] == "vehicle") for k in ("appeared", "departed", "moved")}
    assert total == {"appeared": 3, "departed": 2, "moved": 1}
    assert {r["zone"] for r in ch["rows"]} <= {"quai ouest", "(outside zones)"} and ch["alerts"]
    layer = c.get(f"/items/{job['result']['item']}/detections", params={"format": "compact"}).json()
    assert set(layer["classes"]) == {"appeared vehicle", "departed vehicle", "moved vehicle"}
    assert layer["image"]["id"] == ids["geo2_image"] and layer["width"] == 800 and len(layer["cls"]) == 6
    xs = layer["rings"][0::2]
    assert min(xs) > 0 and max(xs) < 800  # placed in the later image's pixels, not left in degrees
    # the canonical item routes work on the change too; another user cannot see this job
    assert c.get(f"/items/{job['result']['item']}/lineage").status_code == 200
    assert login(console, "nina").get(f"/jobs/{job['id']}").status_code == 404


def test_compare_refuses_hidden_inputs_and_wrong_kinds_before_any_job(console: dict[str, Any]) -> None:
    ids = console["ids"]
    c = login(console, "dora")
    for body in ({"before": ids["geo1"], "after": ids["geo_secret"]},
                 {"before": ids["geo1"], "after": ids["geo2"], "zones": ids["zones_secret"]}):
        r = c.post("/imagery/compare", json=body)
        assert r.status_code == 404, r.text
    assert c.post("/imagery/compare", json={"before": ids["geo1"], "after": ids["convoi"]}).status_code == 400
    assert c.post("/imagery/compare", json={"before": ids["geo1"], "after": ids["geo1"]}).status_code == 400
    assert c.post("/imagery/compare", json={"before": "../etc", "after": ids["geo1"]}).status_code == 400
    assert c.get(f"/items/{ids['secret_change']}/change").status_code == 404
    assert c.get(f"/items/{ids['secret_change']}/detections").status_code == 404
    assert c.get("/jobs").json()["jobs"] == [] or all(j["kind"] != "compare" or j["state"] != "failed"
                                                     for j in c.get("/jobs").json()["jobs"])
    # an S officer's compare with the S zones: the change carries the zones' label too
    olga = login(console, "olga")
    job = finish(olga, olga.post("/imagery/compare", json={"before": ids["geo1"], "after": ids["geo2"],
                                                           "zones": ids["zones_secret"]}).json()["job"])
    assert job["state"] == "done", job["error"] and job["result"]["label"] == "S"
    assert olga.get(f"/items/{job['result']['item']}/change").json()["label"] == "S"


# -- robot pack -----------------------------------------------------------------------------------
def test_pack_plan_approvals_run_replay_and_results(console: dict[str, Any]) -> None:
    ids = console["ids"]
    dora, olga = login(console, "dora"), login(console, "olga")
    r = dora.post("/pack/plans", json={"detections": ids["geo2"], "level": "I", "robots": "quadcopter:3",
                                      "approve_classes": ["vehicle"], "duration": 300})
    assert r.status_code == 200, r.text
    plan = r.json()
    mid = plan["mission"]["id"]
    assert plan["label"] == "DR" and len(plan["tasks"]) == 11 and all(t["marked"] for t in plan["tasks"])
    assert mid in [m["id"] for m in dora.get("/pack/missions").json()["missions"]]
    assert ids["secret_mission"] not in str(dora.get("/pack/missions").json())
    task = plan["tasks"][0]["task"]
    # approvals are for officers, with a reason, once per task
    assert dora.post(f"/pack/missions/{mid}/tasks/{task}/decision",
                     json={"decision": "approve", "reason": "ok"}).status_code == 403
    assert olga.post(f"/pack/missions/{mid}/tasks/{task}/decision",
                     json={"decision": "approve", "reason": ""}).status_code == 400
    ok = olga.post(f"/pack/missions/{mid}/tasks/{task}/decision", json={"decision": "approve", "reason": "cible confirmée"})
    assert ok.status_code == 200, ok.text
    again = olga.post(f"/pack/missions/{mid}/tasks/{task}/decision", json={"decision": "reject", "reason": "non"})
    assert again.status_code == 400 and "already approved" in again.json()["error"]["message"]
    assert olga.post(f"/pack/missions/{mid}/tasks/{plan['tasks'][1]['task']}/decision",
                     json={"decision": "reject", "reason": "zone civile"}).status_code == 200
    m = dora.get(f"/pack/missions/{mid}").json()
    by = {t["task"]: t for t in m["tasks"]}
    assert by[task]["decision"] == "approve" and by[task]["reason"] == "cible confirmée"
    assert by[plan["tasks"][1]["task"]]["decision"] == "reject" and len(m["decisions"]) == 2
    # the run, as a job; its replay for the page's player and its results
    job = finish(dora, dora.post("/pack/runs", json={"mission": mid, "seed": 2}).json()["job"], 180)
    assert job["state"] == "done", job["error"]
    res = dora.get(f"/items/{job['result']['item']}/results").json()
    assert res["label"] == "DR" and res["metrics"]["steps"] > 0 and res["replay"]["id"] == job["result"]["replay"]
    gates = {t["target"]: t["gate"] for t in res["tasks"]} if res["tasks"] and "target" in res["tasks"][0] else {}
    assert not gates or "rejected" in gates.values()
    rep = dora.get(f"/items/{job['result']['replay']}/replay").json()
    assert rep["header"]["extent"] and 2 <= len(rep["frames"]) <= 601 and rep["frames"][0]["x"]
    m2 = dora.get(f"/pack/missions/{mid}").json()
    assert m2["runs"] and m2["runs"][0]["results"]["id"] == job["result"]["item"]
    # hidden stays not found on every pack route
    sm = ids["secret_mission"]
    for path in (f"/pack/missions/{sm}", f"/pack/missions/{sm}/tasks"):
        assert dora.get(path).status_code == 404
    for who in (dora, login(console, "nina")):  # not officers: refused alike, hidden or missing
        hidden = who.post(f"/pack/missions/{sm}/tasks/d0/decision", json={"decision": "approve", "reason": "x"})
        missing = who.post("/pack/missions/zzzzzzzzzzzz/tasks/d0/decision", json={"decision": "approve", "reason": "x"})
        assert hidden.status_code == missing.status_code and hidden.json()["error"]["message"] == missing.json()["error"]["message"]
    assert dora.post("/pack/plans", json={"detections": ids["geo_secret"]}).status_code == 404
    assert dora.get(f"/items/{ids['convoi']}/replay").status_code == 404
    assert dora.get(f"/items/{ids['convoi']}/results").status_code == 404


# -- model factory --------------------------------------------------------------------------------
def test_factory_datasets_models_and_promote_by_role(console: dict[str, Any], factory: dict[str, Any]) -> None:
    dora, olga = login(console, "dora"), login(console, "olga")
    ds = dora.get("/factory/datasets").json()
    assert [d["id"] for d in ds["datasets"]] == [factory["dataset"]] and ds["datasets"][0]["images"] == 3
    assert CANARY["name"] not in str(ds) and ds["label"] == "DR"
    models = dora.get("/factory/models").json()["models"]
    assert [m["id"] for m in models] == [factory["model"]] and "essai" not in models[0]["aliases"]
    # promote: officers and admins only (the factory's rule); no holder yet, so no gate is needed
    r = dora.post(f"/factory/models/{factory['model']}/promote", json={"alias": "production"})
    assert r.status_code == 403 and "officer" in r.json()["error"]["message"]
    r = olga.post(f"/factory/models/{factory['model']}/promote", json={"alias": "essai"})
    assert r.status_code == 200, r.text
    assert r.json()["promoted"]["model"] == factory["model"]
    assert "essai" in dora.get("/factory/models").json()["models"][0]["aliases"]
    # a training job: validated as the user (a hidden dataset is not found; a bad parameter is refused)
    assert dora.post("/factory/jobs", json={"dataset": factory["secret_dataset"]}).status_code == 404
    assert dora.post("/factory/jobs", json={"dataset": factory["dataset"], "epochs": 0}).status_code == 400
    assert dora.post("/factory/models/zzzzzzzzzzzz/promote", json={}).status_code == 404
    # a real submission (the local executor starts the training process), listed with its progress
    # and label, and cancelled by its submitter (someone else's is not theirs to cancel)
    r = dora.post("/factory/jobs", json={"dataset": factory["dataset"], "epochs": 1, "minutes": 0.05})
    assert r.status_code == 200, r.text
    job = r.json()["job"]
    assert job["label"] == "DR" and job["state"] in ("queued", "running") and job["submitted_by"] == "dora"
    listed = dora.get("/factory/jobs").json()
    assert job["id"] in [j["id"] for j in listed["jobs"]] and "progress" in listed["jobs"][0]
    assert login(console, "nina").get(f"/factory/jobs/{job['id']}").status_code == 404  # NP: above her
    assert olga.post(f"/factory/jobs/{job['id']}/cancel").status_code == 403
    cancelled = dora.post(f"/factory/jobs/{job['id']}/cancel")
    assert cancelled.status_code in (200, 400), cancelled.text  # 400: it had already ended
    assert dora.get(f"/factory/jobs/{job['id']}").json()["job"]["state"] in ("cancelled", "completed", "failed")


def test_openapi_lists_the_work_routes(console: dict[str, Any]) -> None:
    paths = httpx.get(console["url"] + "/console/openapi.json").json()["paths"]
    for p in ("/console/api/imagery/compare", "/console/api/items/{vid}/change", "/console/api/pack/plans",
              "/console/api/pack/missions/{mission}/tasks/{task}/decision", "/console/api/items/{vid}/replay",
              "/console/api/factory/datasets", "/console/api/factory/models/{vid}/promote"):
        assert p in paths, p


def test_a_paced_run_takes_decisions_made_while_it_runs(console: dict[str, Any]) -> None:
    """The pack reads the decisions stored during a paced run of a stored mission (where the pack
    can pace a run: until then the console refuses `pace` with a clear message)."""
    import inspect

    from casemate.pack.service import run_scenario

    ids = console["ids"]
    dora, olga = login(console, "dora"), login(console, "olga")
    mid = dora.post("/pack/plans", json={"detections": ids["geo2"], "robots": "quadcopter:3",
                                        "approve_classes": ["vehicle"], "duration": 120}).json()["mission"]["id"]
    r = dora.post("/pack/runs", json={"mission": mid, "seed": 4, "pace": 30})
    if "pace" not in inspect.signature(run_scenario).parameters:
        assert r.status_code == 400 and "pace" in r.json()["error"]["message"]
        return
    assert r.status_code == 200, r.text
    job = r.json()["job"]
    end = time.monotonic() + 30
    while job["state"] == "queued" and time.monotonic() < end:
        time.sleep(0.1)
        job = dora.get(f"/jobs/{job['id']}").json()["job"]
    assert olga.post(f"/pack/missions/{mid}/tasks/d2/decision",
                     json={"decision": "approve", "reason": "vu en direct"}).status_code == 200
    job = finish(dora, job, 120)
    assert job["state"] == "done", job["error"]
    tasks = {t["task"]: t for t in dora.get(f"/items/{job['result']['item']}/results").json()["tasks"]}
    assert tasks["d2"]["gate"] == "approved" and tasks["d3"]["gate"] == "waiting"
