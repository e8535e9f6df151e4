"""Console benchmarks: the catalog list over 1,000,000 versions and the item view, through the
console's API on loopback and rendered in headless Chromium; the map with 50,000 detections.

    .venv/bin/python benchmarks/bench_console.py [--versions 1000000] [--detections 50000] [--no-browser]

The catalog list's filters (kind, label, name, dates; FILTERS below) are timed on the same catalog.

Prints one JSON object; the figures go into docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

import httpx  # noqa: E402

from casemate.catalog.models import new_id  # noqa: E402
from casemate.config import HooksConfig  # noqa: E402
from casemate.security.labels import Label, Level, format_label  # noqa: E402
from casemate.store import db  # noqa: E402
from casemate.workspace import Workspace  # noqa: E402

PASSWORD = "pw-bench-correct-horse"
FILTERS: dict[str, dict[str, str]] = {
    "label_dr": {"label": "DR"},
    "kind_image_label_np": {"kind": "image", "label": "NP"},
    "name_dense": {"name": "doc-99"},
    "name_one_in_1m": {"name": "doc-123456"},
    "name_none": {"name": "zzz"},
    "since_all": {"since": "2026-11-01"},
    "since_none": {"since": "2026-12-01"},
    "label_name_since": {"label": "NP", "name": "doc-5", "since": "2026-11-01"},
}


def build(home: Path, n_versions: int) -> dict[str, str]:
    """A workspace with `n_versions` versions under 12 labels (most NP/DR), and one real document."""
    ws = Workspace.init(home)
    admin = ws.acting_user("admin")
    ws.users.add(admin, "dora", clearance="DR", roles=["analyst"])
    ws.users.set_password(admin, "dora", PASSWORD)
    rng = random.Random(3)
    labels = [Label(Level(lv), frozenset(c)) for lv in range(4) for c in ([], ["ALPHA"], ["BRAVO"])]
    weights = [50 if not lb.compartments and lb.level <= 1 else 3 for lb in labels]
    now = "2026-11-23T00:00:00+00:00"
    with ws.transaction() as conn:
        ids = [conn.execute(db.labels.insert().values(text=format_label(lb))).inserted_primary_key[0] for lb in labels]
    step = 50_000
    for start in range(0, n_versions, step):
        n = min(step, n_versions - start)
        with ws.transaction() as conn:
            conn.execute(db.assets.insert(), [{"id": start + i + 1, "public_id": new_id(), "source_key": None,
                                               "created_at": now} for i in range(n)])
            picks = rng.choices(range(len(labels)), weights=weights, k=n)
            conn.execute(db.versions.insert(), [
                {"id": start + i + 1, "public_id": new_id(), "asset_id": start + i + 1, "label_id": ids[picks[i]],
                 "sha256": "0" * 64, "size": 100, "kind": "document" if i % 3 else "image",
                 "name": f"doc-{start + i}", "source_path": None, "created_by": "bench", "created_at": now,
                 "metadata": "{}"} for i in range(n)])
    text = "Note logistique : le convoi part mardi du dépôt nord. " * 40
    doc = ws.catalog.put(admin, text.encode(), name="note.txt", kind="document", label="DR", text=text)
    out = {"doc": doc.id}
    ws.close()
    return out


def add_map(ws: Workspace, n: int) -> str:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "console"))
    from conftest import detections_doc, png_bytes

    admin = ws.acting_user("admin")
    img = ws.catalog.put(admin, png_bytes(4000, 3000), name="big-scene.png", kind="image", label="DR")
    dets = detections_doc(n, 4000, 3000, ["vehicle", "ship", "aircraft", "truck", "tank"])
    ws.catalog.put(admin, json.dumps(dets).encode(), name="big-scene.detections.geojson", kind="detections",
                   label="DR", parents=[img.id], metadata={"format": "geojson"})
    return img.id


def serve(app: Any) -> tuple[Any, str]:
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return server, f"http://127.0.0.1:{port}"


def timed(fn: Any, n: int) -> dict[str, float]:
    lat = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        lat.append((time.perf_counter() - t0) * 1000)
    lat.sort()
    return {"median_ms": round(statistics.median(lat), 1), "max_ms": round(lat[-1], 1), "n": n}


def browser_figures(url: str, doc: str, image: str | None) -> dict[str, Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.ui import WebDriverWait

    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    profile = tempfile.mkdtemp(prefix="bench-chromium-")
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", f"--user-data-dir={profile}"):
        opts.add_argument(flag)
    d = webdriver.Chrome(options=opts, service=Service(executable_path=shutil.which("chromedriver")))
    d.set_window_size(1400, 1000)
    out: dict[str, Any] = {}
    try:
        st = lambda: d.find_element("tag name", "body").get_attribute("data-state")  # noqa: E731
        d.get(url + "/console/")
        WebDriverWait(d, 30).until(lambda _: st() == "login")
        d.find_element("id", "username").send_keys("dora")
        d.find_element("id", "password").send_keys(PASSWORD)
        d.find_element("id", "login-button").click()
        WebDriverWait(d, 30).until(lambda _: st() == "ready")

        def page(route: str, until: Any) -> float:
            d.get(url + "/console/#/blank")
            WebDriverWait(d, 30).until(lambda _: st() in ("ready", "error"))
            t0 = time.perf_counter()
            d.execute_script("location.hash = arguments[0]", route)
            WebDriverWait(d, 60, poll_frequency=0.02).until(until)
            wall = (time.perf_counter() - t0) * 1000
            ms = d.find_element("tag name", "body").get_attribute("data-route-ms")
            return float(ms) if ms and not route.startswith("#/map") else wall

        rows = lambda _: st() == "ready" and d.find_elements("css selector", "#rows tr")  # noqa: E731
        for name, route, until in (
            ("catalog_first_page_rendered", "#/catalog",
             lambda _: st() == "ready" and len(d.find_elements("css selector", "#rows tr")) == 50),
            ("catalog_filtered_name_dense_rendered", "#/catalog?name=doc-99", rows),
            ("catalog_filtered_name_one_in_1m_rendered", "#/catalog?name=doc-123456", rows),
            ("catalog_filtered_name_none_rendered", "#/catalog?name=zzz", rows),
            ("catalog_filtered_label_name_since_rendered", "#/catalog?label=NP&name=doc-5&since=2026-11-01", rows),
            ("item_view_rendered", f"#/item/{doc}",
             lambda _: st() == "ready" and d.find_elements("css selector", "#lineage li")),
        ):
            lat = sorted(page(route, until) for _ in range(7))
            out[name] = {"median_ms": round(statistics.median(lat), 1), "max_ms": round(lat[-1], 1), "n": 7}
        # a sparse filter over the whole catalog: the page reads it a window at a time, by itself
        for name, route in (("catalog_filtered_name_one_in_1m_complete", "#/catalog?name=doc-123456"),
                            ("catalog_filtered_name_none_complete", "#/catalog?name=zzz")):
            lat = []
            for _ in range(3):
                d.get(url + "/console/#/blank")
                WebDriverWait(d, 30).until(lambda _: st() in ("ready", "error"))
                t0 = time.perf_counter()
                d.execute_script("location.hash = arguments[0]", route)
                WebDriverWait(d, 120, poll_frequency=0.02).until(
                    lambda _: st() == "ready" and d.find_element("tag name", "body").get_attribute("data-searching")
                    is None and d.find_elements("css selector", "#rows tr"))
                lat.append((time.perf_counter() - t0) * 1000)
            out[name] = {"median_ms": round(statistics.median(lat), 1), "max_ms": round(max(lat), 1), "n": 3,
                         "rows": len(d.find_elements("css selector", "#rows tr.row"))}
        if image:
            lat = sorted(page(f"#/map/{image}", lambda _: d.find_element("tag name", "body")
                              .get_attribute("data-map") == "ready") for _ in range(3))
            out["map_50k_first_render"] = {"median_ms": round(statistics.median(lat), 1), "n": 3}
            body = d.find_element("tag name", "body")
            out["map_50k_fetch_and_parse_ms"] = float(body.get_attribute("data-fetch-ms"))
            out["map_50k_canvas_draw_ms"] = float(body.get_attribute("data-draw-ms"))
            # a pan (what the user does most) and a zoom (redraws every detection), in the page's clock
            out["map_pan_frame_ms"] = d.execute_script("""
                const m = window.cmMap, v = m.getView(), c = v.getCenter(), t = [];
                v.setHint(1, 1);  // ViewHint.INTERACTING: what a drag sets
                for (let i = 0; i < 10; i++) { v.setCenter([c[0] + 20 * i, c[1]]); const t0 = performance.now();
                  m.renderSync(); t.push(performance.now() - t0); }
                v.setHint(1, -1);
                t.sort((a, b) => a - b); return Math.round(t[5] * 10) / 10;""")
            out["map_zoom_redraw_ms"] = d.execute_async_script("""
                const done = arguments[0], m = window.cmMap, v = m.getView();
                const t0 = performance.now(); m.once('rendercomplete', () => done(Math.round(performance.now() - t0)));
                v.setZoom(v.getZoom() + 1);""")
    finally:
        d.quit()
        shutil.rmtree(profile, ignore_errors=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--versions", type=int, default=1_000_000)
    ap.add_argument("--detections", type=int, default=50_000)
    ap.add_argument("--no-browser", action="store_true")
    args = ap.parse_args()
    from casemate.console import mount
    from casemate.server.app import create_app

    results: dict[str, Any] = {"versions": args.versions, "load": os.getloadavg()}
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        t0 = time.perf_counter()
        ids = build(Path(tmp) / "ws", args.versions)
        results["build_s"] = round(time.perf_counter() - t0, 1)
        ws = Workspace.open(Path(tmp) / "ws")
        ws.config = ws.config.model_copy(update={"hooks": HooksConfig(after_ingest=())})
        image = add_map(ws, args.detections) if args.detections else None

        class NoAssistant:  # the list and item views never call the assistant
            _lock = threading.RLock()

        server, url = serve(mount(create_app(ws, NoAssistant(), rate_per_minute=100_000), ws, NoAssistant()))
        c = httpx.Client(base_url=url + "/console/api", timeout=60)
        c.post("/login", json={"username": "dora", "password": PASSWORD}).raise_for_status()
        for _ in range(3):
            c.get("/items").raise_for_status()
        results["api_first_page_50"] = timed(lambda: c.get("/items").raise_for_status(), 20)
        first = c.get("/items").json()
        results["api_second_page_50"] = timed(
            lambda: c.get("/items", params={"before": first["next"]}).raise_for_status(), 20)
        results["api_first_page_kind_image"] = timed(lambda: c.get("/items", params={"kind": "image"}), 20)
        # the list's filters, done in SQL (console/queries.py): dense ones stop early, sparse ones
        # ("doc-123456": one row in 1,000,000; "zzz" and a date after every row: none) read every row
        def walk(params: dict[str, str]) -> int:  # every window of a sparse filter, as the page does
            n, cursor = 0, None
            while True:
                got = c.get("/items", params={**params, **({"before": cursor} if cursor else {})}).json()
                n += len(got["items"])
                cursor = got["next"]
                if not cursor or n >= 50:
                    return n
        for key in ("name_one_in_1m", "name_none"):
            results[f"api_filter_{key}_all_windows"] = timed(lambda k=key: walk(FILTERS[k]), 3)
        for key, params in FILTERS.items():
            results[f"api_filter_{key}"] = timed(lambda p=params: c.get("/items", params=p).raise_for_status(), 7)
            results[f"api_filter_{key}"]["rows"] = len(c.get("/items", params=params).json()["items"])
        doc = ids["doc"]
        results["api_item_view_calls"] = timed(lambda: [c.get(f"/items/{doc}{s}").raise_for_status()
                                                        for s in ("", "/text", "/lineage")], 20)
        if image:
            results["api_detections_compact_50k"] = timed(
                lambda: c.get(f"/items/{image}/detections", params={"format": "compact"}).raise_for_status(), 3)
        t0 = time.perf_counter()
        c.get(f"/items/{image}/render.png").raise_for_status() if image else None
        results["api_render_png_4000x3000_first_ms"] = round((time.perf_counter() - t0) * 1000, 1)
        if not args.no_browser:
            results["browser"] = browser_figures(url, doc, image)
        server.should_exit = True
        ws.close()
    results["load_after"] = os.getloadavg()
    print(json.dumps(results, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
