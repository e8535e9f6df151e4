from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import console_fakes  # noqa: E402
from console_fakes import CANARY, PASSWORDS, png_bytes, wav_bytes  # noqa: E402,F401

# Text, names and labels of items above the low user's clearance: none may ever reach dora's browser.


def detections_doc(n: int, w: int, h: int, classes: list[str], seed: int = 0) -> dict[str, Any]:
    import random

    rnd = random.Random(seed)
    feats = []
    for i in range(n):
        x, y = rnd.uniform(10, w - 30), rnd.uniform(10, h - 30)
        s = rnd.uniform(6, 20)
        ring = [[x, y], [x + s, y], [x + s, y + s / 2], [x, y + s / 2], [x, y]]
        feats.append({"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [ring]},
                      "properties": {"label": classes[i % len(classes)], "dri_level": "DRI"[i % 3],
                                     "score": round(rnd.uniform(0.3, 1.0), 3), "centre_px": [x + s / 2, y + s / 4]}})
    return {"type": "FeatureCollection", "features": feats,
            "casemate": {"coordinates": "pixel", "width": w, "height": h}}


def geo_detections(objects: list[tuple[str, float, float, str]], w: int, h: int) -> dict[str, Any]:
    """Georeferenced detections (WGS84, as `detect` writes them): (class, x, y, level) in pixels of a
    w x h image at 1e-5 degree (about 1 m) a pixel near 5 E, 43 N."""
    feats = []
    for cls, x, y, level in objects:
        ring_px = [[x - 4, y - 2], [x + 4, y - 2], [x + 4, y + 2], [x - 4, y + 2], [x - 4, y - 2]]
        ring = [[5.0 + px * 1e-5, 43.0 - py * 1e-5] for px, py in ring_px]
        feats.append({"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [ring]},
                      "properties": {"label": cls, "dri_level": level, "score": 0.9, "length_m": 8.0,
                                     "centre_px": [x, y], "centre_lonlat": [5.0 + x * 1e-5, 43.0 - y * 1e-5]}})
    return {"type": "FeatureCollection", "features": feats,
            "casemate": {"coordinates": "wgs84", "width": w, "height": h}}


def zones_doc(name: str) -> dict[str, Any]:
    """One zone over the left half of the geo images above."""
    ring = [[5.0, 43.0], [5.0 + 400e-5, 43.0], [5.0 + 400e-5, 43.0 - 600e-5], [5.0, 43.0 - 600e-5], [5.0, 43.0]]
    return {"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [ring]},
         "properties": {"name": name, "alert_threshold": 1}}]}


def build(home: Path) -> dict[str, Any]:
    from casemate.assistant.pipeline import Assistant
    from casemate.config import HooksConfig
    from casemate.workspace import Workspace

    ws = Workspace.init(home)
    ws.config = ws.config.model_copy(update={"hooks": HooksConfig(after_ingest=("console_fakes:after_ingest",))})
    admin = ws.acting_user("admin")
    ws.users.add(admin, "nina", clearance="NP", roles=["analyst"])
    ws.users.add(admin, "dora", clearance="DR", roles=["analyst"])
    ws.users.add(admin, "olga", clearance="S", roles=["officer", "analyst"])
    ws.users.add(admin, "adam", clearance=f"TS//{CANARY['comp']}", roles=["admin", "analyst"])
    for name, pw in PASSWORDS.items():
        ws.users.set_password(admin, name, pw)
    adam = ws.acting_user("adam")
    ids: dict[str, str] = {}

    def doc(key: str, name: str, text: str, label: str, user: Any = admin) -> None:
        ids[key] = ws.catalog.put(user, text.encode(), name=name, kind="document", label=label, text=text).id

    doc("convoi", "convoi-nord.txt", "Note logistique. Le convoi de ravitaillement en carburant part mardi du "
        "dépôt nord à six heures, escorté par deux véhicules.", "DR")
    doc("public", "bulletin.txt", "Bulletin public : la base organise une journée portes ouvertes.", "NP")
    doc("secret", CANARY["name"] + ".txt", f"Opération TEMPETE {CANARY['text']} : le convoi de ravitaillement "
        "en carburant part mardi du dépôt nord.", "S")
    doc("zulu", "zulu-" + CANARY["name"] + ".txt", f"{CANARY['text']} convoi carburant dépôt nord compartiment.",
        f"S//{CANARY['comp']}", adam)
    doc("tsdoc", "ts-" + CANARY["name"] + ".txt", f"{CANARY['text']} Très Secret carburant convoi.", "TS")
    # an image with a DR detections layer, and a Secret layer over the same image (dora must not see it)
    w, h = 800, 600
    img = ws.catalog.put(admin, png_bytes(w, h), name="scene-port.png", kind="image", label="DR")
    ids["image"] = img.id
    dets = detections_doc(300, w, h, ["vehicle", "ship", "aircraft"])
    ids["dets"] = ws.catalog.put(admin, json.dumps(dets).encode(), name="scene-port.detections.geojson",
                                 kind="detections", label="DR", parents=[img.id],
                                 metadata={"format": "geojson"}).id
    secret_dets = detections_doc(5, w, h, [CANARY["det"]], seed=1)
    ids["secret_dets"] = ws.catalog.put(admin, json.dumps(secret_dets).encode(),
                                        name=f"{CANARY['name']}.detections.geojson", kind="detections",
                                        label="S", parents=[img.id], metadata={"format": "geojson"}).id
    # a recording and its transcript (as transcribe_source stores them)
    audio = ws.catalog.put(admin, wav_bytes(), name="radio.wav", kind="audio", label="DR",
                           metadata={"duration": 4.0})
    ids["audio"] = audio.id
    segs = [{"start": 0.0, "end": 1.5, "text": "Ici Alpha, convoi en route."},
            {"start": 2.0, "end": 3.8, "text": "Arrivée au dépôt nord prévue."}]
    ids["transcript"] = ws.catalog.put(admin, json.dumps({"audio": audio.id, "segments": segs}).encode(),
                                       name="radio.wav.transcript.json", kind="transcript", label="DR",
                                       parents=[audio.id], metadata={"segments": segs, "model": "test"},
                                       text="\n".join(s["text"] for s in segs)).id
    # two dates of a harbour, georeferenced: 10 vehicles, then 2 gone, 1 moved 12 m, 3 new (change and
    # the robot pack's mission planning work on these); a Secret later date with a canary class
    w, h = 800, 600
    first = [("vehicle", 60 + 60 * i, 100 + 40 * (i % 3), "D") for i in range(10)]
    second = first[:7] + [("vehicle", first[7][1] + 15, first[7][2], "R")]
    second += [("vehicle", 100 + 150 * i, 450, "D") for i in range(3)]
    for key, objs, label in (("geo1", first, "DR"), ("geo2", second, "DR"),
                             ("geo_secret", second + [(CANARY["det"], 700, 500, "D")] * 3, "S")):
        im = ws.catalog.put(admin, png_bytes(w, h), name=f"rade-{key}.png", kind="image", label="DR")
        ids[key + "_image"] = im.id
        name = f"rade-{key}.detections.geojson" if label != "S" else f"{CANARY['name']}-rade.detections.geojson"
        ids[key] = ws.catalog.put(admin, json.dumps(geo_detections(objs, w, h)).encode(), name=name,
                                  kind="detections", label=label, parents=[im.id],
                                  metadata={"format": "geojson", "image": im.id}).id
    ids["zones"] = ws.catalog.put(admin, json.dumps(zones_doc("quai ouest")).encode(), name="zones-rade.geojson",
                                  kind="other", label="DR").id
    ids["zones_secret"] = ws.catalog.put(admin, json.dumps(zones_doc(CANARY["name"])).encode(),
                                         name=f"zones-{CANARY['name']}.geojson", kind="other", label="S").id
    # a Secret change and mission: dora must never see them, on any page
    from casemate.imagery.service import compare_sources
    from casemate.pack.service import plan_from_detections

    olga = ws.acting_user("olga")
    ids["secret_change"] = compare_sources(ws, olga, ids["geo1"], ids["geo_secret"]).change.id
    ids["secret_mission"] = plan_from_detections(ws, olga, ids["geo_secret"], robots="quadcopter:2",
                                                 name=CANARY["name"] + "-mission").mission.id
    assistant = Assistant(ws, embedder=console_fakes.HashEmbedder(), engine=console_fakes.CitingEngine())
    console_fakes.ASSISTANT["a"] = assistant
    assistant.index_all(admin)
    assistant.index_all(adam)
    return {"ws": ws, "ids": ids, "assistant": assistant}


def serve(app: Any) -> tuple[Any, threading.Thread, str]:
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(200):
        if server.started:
            break
        time.sleep(0.05)
    return server, thread, f"http://127.0.0.1:{port}"


@pytest.fixture(scope="session")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The server's app with the console mounted, under uvicorn on loopback."""
    from casemate.console import mount
    from casemate.console.settings import ConsoleSettings
    from casemate.server.app import create_app

    data = build(Path(tmp_path_factory.mktemp("console")) / "ws")
    ws = data["ws"]
    app = mount(create_app(ws, data["assistant"], rate_per_minute=10_000), ws, data["assistant"],
                settings=ConsoleSettings(login_per_minute=1000))
    server, thread, url = serve(app)
    data["url"] = url
    yield data
    server.should_exit = True
    thread.join(timeout=10)
    ws.close()


def _yolo(root: Path, n: int = 3) -> Path:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(root / "images" / f"im{i}.png")
        (root / "labels" / f"im{i}.txt").write_text("0 0.5 0.5 0.2 0.2\n1 0.3 0.3 0.1 0.1\n")
    (root / "data.yaml").write_text("names:\n  0: car\n  1: bus\n")
    return root


@pytest.fixture(scope="session")
def factory(console: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A DR dataset, a Secret one, and a model registered from the DR one (signed, as training does)."""
    from casemate.factory.datasets import get_dataset, import_dataset
    from casemate.factory.registry import register_model

    ws = console["ws"]
    admin = ws.acting_user("admin")
    root = tmp_path_factory.mktemp("factory")
    ds = import_dataset(ws, admin, _yolo(root / "dr"), fmt="yolo", label="DR", name="vehicules-dr")
    secret = import_dataset(ws, admin, _yolo(root / "s"), fmt="yolo", label="S", name=CANARY["name"] + "-ds")
    ds_v, manifest = get_dataset(ws, admin, ds.dataset.id)
    folder = root / "model"
    folder.mkdir()
    (folder / "model.onnx").write_bytes(b"not a real network: the registry signs files, the console lists them")
    (folder / "manifest.json").write_text('{"name": "tiny", "classes": ["car", "bus"], "input_size": 64}')
    model = register_model(ws, admin, folder, dataset=ds_v, dataset_manifest=manifest, metrics={"map50": 0.5})
    return {"dataset": ds.dataset.id, "secret_dataset": secret.dataset.id, "model": model.id}


@pytest.fixture(scope="session")
def shots() -> Path:
    """Where the browser tests save their screenshots (docs/console/ when CASEMATE_SCREENSHOTS says so)."""
    out = Path(os.environ.get("CASEMATE_SCREENSHOTS") or Path(os.environ.get("TMPDIR", "/tmp")) / "casemate-shots")
    out.mkdir(parents=True, exist_ok=True)
    return out
