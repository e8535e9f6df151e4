"""The console's REST API over loopback: sessions, CSRF, the catalog under the read policy."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from console_fakes import CANARY, PASSWORDS


def login(console: dict[str, Any], name: str) -> httpx.Client:
    c = httpx.Client(base_url=console["url"] + "/console/api", timeout=30)
    r = c.post("/login", json={"username": name, "password": PASSWORDS[name]})
    assert r.status_code == 200, r.text
    c.headers["X-CSRF-Token"] = r.json()["csrf"]
    return c


def test_session_cookie_is_httponly_strict_and_csrf_is_required(console: dict[str, Any]) -> None:
    c = httpx.Client(base_url=console["url"] + "/console/api")
    assert c.get("/items").status_code == 401
    r = c.post("/login", json={"username": "dora", "password": "wrong-password-123"})
    assert r.status_code == 401 and "wrong user name or password" in r.json()["error"]["message"]
    r = c.post("/login", json={"username": "dora", "password": PASSWORDS["dora"]})
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/console" in cookie
    assert "default-src 'self'" in r.headers["content-security-policy"]
    assert c.get("/items").status_code == 200
    # a change without the CSRF token is refused, with it accepted
    r = c.post("/tokens", json={"note": "x"})
    assert r.status_code == 403 and "CSRF" in r.json()["error"]["message"]
    c.headers["X-CSRF-Token"] = c.get("/session").json()["csrf"]
    assert c.post("/tokens", json={"note": "x"}).status_code == 200
    assert c.post("/logout").status_code == 200
    assert c.get("/items").status_code == 401


def test_login_attempts_are_limited(console: dict[str, Any]) -> None:
    from fastapi.testclient import TestClient

    from casemate.console import create_console
    from casemate.console.settings import ConsoleSettings

    app = create_console(console["ws"], console["assistant"], settings=ConsoleSettings(login_per_minute=3))
    with TestClient(app) as c:
        codes = [c.post("/console/api/login", json={"username": "nina", "password": "nope-nope-nope"}).status_code
                 for _ in range(4)]
    assert codes == [401, 401, 401, 429]


def test_hidden_is_not_found_on_every_item_route(console: dict[str, Any]) -> None:
    c = login(console, "dora")
    ids = console["ids"]
    routes = ["", "/content", "/text", "/lineage", "/render.png", "/detections", "/transcript"]
    for hidden in (ids["secret"], ids["zulu"], ids["tsdoc"], ids["secret_dets"]):
        for suffix in routes:
            r = c.get(f"/items/{hidden}{suffix}")
            missing = c.get(f"/items/zzzzzzzzzzzz{suffix}")
            assert r.status_code == missing.status_code == 404, (suffix, r.text)
            assert r.json()["error"]["message"] == f"no such item: {hidden}"
        r = c.post(f"/items/{hidden}/declassify", json={"to": "NP", "reason": "x"})
        assert r.status_code == 404
        assert c.post(f"/items/{hidden}/transcribe", json={}).status_code == 404


def test_catalog_list_filters_and_pages(console: dict[str, Any]) -> None:
    c = login(console, "dora")
    names = [v["name"] for v in c.get("/items").json()["items"]]
    assert "convoi-nord.txt" in names and not any(CANARY["name"] in n for n in names)
    assert [v["name"] for v in c.get("/items", params={"name": "CONVOI"}).json()["items"]] == ["convoi-nord.txt"]
    only_np = c.get("/items", params={"label": "NP"}).json()
    assert {v["label"] for v in only_np["items"]} == {"NP"} and only_np["label"] == "NP"
    assert {v["kind"] for v in c.get("/items", params={"kind": "image"}).json()["items"]} == {"image"}
    assert c.get("/items", params={"since": "2999-01-01"}).json()["items"] == []
    assert c.get("/items", params={"kind": "nonsense"}).status_code == 400
    first = c.get("/items", params={"limit": 2}).json()
    second = c.get("/items", params={"limit": 2, "before": first["next"]}).json()
    assert len(first["items"]) == 2 and not {v["id"] for v in first["items"]} & {v["id"] for v in second["items"]}
    found = c.get("/items", params={"q": "convoi carburant dépôt nord"}).json()
    assert [v["name"] for v in found["items"]][:1] == ["convoi-nord.txt"]
    assert CANARY["text"] not in str(found) and CANARY["name"] not in str(found)


def test_item_children_and_detections_hide_the_secret_layer(console: dict[str, Any]) -> None:
    ids = console["ids"]
    dora, olga = login(console, "dora"), login(console, "olga")
    item = dora.get(f"/items/{ids['image']}").json()
    assert [k["id"] for k in item["children"]] == [ids["dets"]] and item["label"] == "DR"
    assert {k["id"] for k in olga.get(f"/items/{ids['image']}").json()["children"]} == {ids["dets"], ids["secret_dets"]}
    det = dora.get(f"/items/{ids['image']}/detections", params={"format": "compact"}).json()
    assert det["width"] == 800 and det["height"] == 600 and len(det["cls"]) == 300
    assert set(det["classes"]) == {"vehicle", "ship", "aircraft"} and det["levels"] == ["D", "R", "I"]
    geo = dora.get(f"/items/{ids['dets']}/detections").json()
    assert geo["type"] == "FeatureCollection" and len(geo["features"]) == 300
    png = dora.get(f"/items/{ids['image']}/render.png")
    assert png.status_code == 200 and png.content[:4] == b"\x89PNG"
    assert dora.get(f"/items/{ids['convoi']}/render.png").status_code == 400


def test_upload_reports_per_file_and_requires_a_label(console: dict[str, Any]) -> None:
    c = login(console, "dora")
    files = [("files", ("rapport-upload.txt", b"Rapport de patrouille: secteur calme.", "text/plain")),
             ("files", ("casse.pdf", b"%PDF-1.4 not really a pdf", "application/pdf"))]
    r = c.post("/upload", data={"label": ""}, files=files)
    assert r.status_code == 400 and "label" in r.json()["error"]["message"]
    r = c.post("/upload", data={"label": "S"}, files=files)  # above dora's clearance: nothing stored
    assert r.status_code in (400, 403)
    r = c.post("/upload", data={"label": "DR"}, files=files)
    assert r.status_code == 200, r.text
    res = {x["file"]: x for x in r.json()["results"]}
    assert res["rapport-upload.txt"]["ok"] and res["rapport-upload.txt"]["item"]["label"] == "DR"
    assert not res["casse.pdf"]["ok"] and "PDF" in res["casse.pdf"]["error"]
    assert "/tmp" not in str(r.json()) and "upload-" not in str(r.json())
    vid = res["rapport-upload.txt"]["item"]["id"]
    assert c.get(f"/items/{vid}/text").json()["text"].startswith("Rapport de patrouille")
    # big uploads pass (the server's JSON body limit does not apply to the console)
    big = c.post("/upload", data={"label": "NP"}, files=[("files", ("gros.txt", b"x " * 200_000, "text/plain"))])
    assert big.status_code == 200 and big.json()["results"][0]["ok"]


def test_content_of_an_unsafe_type_is_a_download(console: dict[str, Any]) -> None:
    c = login(console, "dora")
    r = c.post("/upload", data={"label": "DR"}, files=[("files", ("page.html", b"<script>alert(1)</script>",
                                                                   "text/html"))])
    vid = r.json()["results"][0]["item"]["id"]
    got = c.get(f"/items/{vid}/content")
    assert got.headers["content-type"] == "application/octet-stream"
    assert got.headers["content-disposition"].startswith("attachment")
    assert "sandbox" in got.headers["content-security-policy"]


def test_declassify_is_for_officers_with_a_reason(console: dict[str, Any]) -> None:
    ws, ids = console["ws"], console["ids"]
    admin = ws.acting_user("admin")
    v = ws.catalog.put(admin, b"bilan", name="bilan-api.txt", kind="document", label="S", text="bilan")
    dora, olga = login(console, "dora"), login(console, "olga")
    olga_analyst = olga.post(f"/items/{v.id}/declassify", json={"to": "DR", "reason": ""})
    assert olga_analyst.status_code == 400
    r = olga.post(f"/items/{v.id}/declassify", json={"to": "DR", "reason": "bulletin 42"})
    assert r.status_code == 200 and r.json()["item"]["label"] == "DR"
    assert dora.get(f"/items/{r.json()['item']['id']}").status_code == 200
    assert dora.post(f"/items/{ids['convoi']}/declassify", json={"to": "NP", "reason": "x"}).status_code == 403


def test_admin_routes_are_for_admins(console: dict[str, Any]) -> None:
    dora, adam = login(console, "dora"), login(console, "adam")
    for path in ("/audit", "/users"):
        assert dora.get(path).status_code == 403
    assert dora.post("/audit/verify").status_code == 403
    assert dora.post("/users", json={"name": "eve", "clearance": "TS"}).status_code == 403
    assert adam.post("/audit/verify").json()["ok"] is True
    assert adam.post("/users", json={"name": "bad name", "clearance": "DR"}).status_code == 400
    assert adam.post("/users", json={"name": "x1", "clearance": "DR", "password": "short"}).status_code == 400
    assert adam.get("/users").json()["users"] and "x1" not in str(adam.get("/users").json())


def test_transcript_segments_and_a_transcription_job(console: dict[str, Any]) -> None:
    c = login(console, "dora")
    ids = console["ids"]
    tr = c.get(f"/items/{ids['audio']}/transcript").json()
    assert tr["transcript"]["id"] == ids["transcript"] and tr["segments"][1]["start"] == 2.0
    assert c.post(f"/items/{ids['convoi']}/transcribe", json={}).status_code == 400
    # a job runs apart from the request; without a speech model it fails with the model's own message
    from console_fakes import wav_bytes

    ws = console["ws"]
    own = ws.catalog.put(ws.acting_user("dora"), wav_bytes(1.0), name="job.wav", kind="audio", label="DR")
    job = c.post(f"/items/{own.id}/transcribe", json={}).json()["job"]
    for _ in range(100):
        job = c.get(f"/jobs/{job['id']}").json()["job"]
        if job["state"] in ("done", "failed"):
            break
        time.sleep(0.1)
    assert job["state"] in ("done", "failed") and (job["state"] == "done" or "Traceback" not in job["error"])
    assert [j["id"] for j in c.get("/jobs").json()["jobs"]][:1] == [job["id"]]
    assert login(console, "nina").get(f"/jobs/{job['id']}").status_code == 404  # another user's job


@pytest.mark.parametrize("name", ["nina"])
def test_ask_streams_meta_deltas_done(console: dict[str, Any], name: str) -> None:
    c = login(console, "dora")
    with c.stream("POST", "/ask", json={"question": "Quand part le convoi de carburant du dépôt nord ?"}) as r:
        body = "".join(r.iter_text())
    assert '"type": "meta"' in body and '"type": "done"' in body and "[1]" in body
    assert CANARY["text"] not in body and CANARY["name"] not in body


def test_openapi_offline_and_the_server_still_behind(console: dict[str, Any]) -> None:
    schema = httpx.get(console["url"] + "/console/openapi.json").json()
    assert "/console/api/items/{vid}/detections" in schema["paths"] and "/console/api/upload" in schema["paths"]
    assert httpx.get(console["url"] + "/api/health").json() == {"status": "ok"}  # the server's own route
    page = httpx.get(console["url"] + "/console/")
    assert page.status_code == 200 and "<script src=\"/console/static/console.js\"" in page.text
    assert "<style" not in page.text and " style=" not in page.text and "<script>" not in page.text
    assert httpx.get(console["url"] + "/console/static/vendor/ol.js").status_code == 200
    assert httpx.get(console["url"] + "/console/static/../app.py").status_code == 404


def _finish(c: httpx.Client, job: dict[str, Any], seconds: float = 90) -> dict[str, Any]:
    end = time.monotonic() + seconds
    while job["state"] not in ("done", "failed") and time.monotonic() < end:
        time.sleep(0.2)
        job = c.get(f"/jobs/{job['id']}").json()["job"]
    return job


def test_detect_and_pack_run_are_jobs_on_ids_never_paths(console: dict[str, Any]) -> None:
    c = login(console, "dora")
    ids = console["ids"]
    assert c.post(f"/items/{ids['secret']}/detect", json={}).status_code == 404
    assert c.post(f"/items/{ids['convoi']}/detect", json={}).status_code == 400
    assert c.post(f"/items/{ids['image']}/detect", json={"model": "/etc/passwd"}).status_code == 400
    for bad in ("../../etc/passwd", "/tmp/x.yaml", "a.yaml"):
        assert c.post("/pack/runs", json={"mission": bad}).status_code == 400
    assert c.post("/pack/runs", json={"mission": ids["secret"]}).status_code == 404
    scenarios = c.get("/pack/scenarios").json()["scenarios"]
    assert "harbour-search" in scenarios
    from console_fakes import png_bytes

    ws = console["ws"]
    own = ws.catalog.put(ws.acting_user("dora"), png_bytes(640, 480), name="own.png", kind="image", label="DR")
    job = _finish(c, c.post(f"/items/{own.id}/detect", json={}).json()["job"])
    assert job["state"] in ("done", "failed") and "Traceback" not in (job["error"] or "")
    if job["state"] == "done":  # the built-in detector ran: its layer is readable and drawn in pixels
        det = c.get(f"/items/{own.id}/detections", params={"format": "compact"}).json()
        assert det["width"] == 640 and det["layer"]["parents"][0] == own.id


@pytest.mark.slow
def test_pack_run_job_stores_results_in_the_catalog(console: dict[str, Any]) -> None:
    c = login(console, "dora")
    t0 = time.monotonic()
    job = _finish(c, c.post("/pack/runs", json={"mission": "harbour-search", "seed": 1}).json()["job"], 120)
    print(f"pack run job: {time.monotonic() - t0:.1f} s, {job['state']}, {job['error']}")
    assert job["state"] == "done", job["error"]
    assert c.get(f"/items/{job['result']['item']}").status_code == 200
    assert job["result"]["metrics"]["steps"] > 0
