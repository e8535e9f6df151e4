"""The registry: signed models, verified at every load (tampering with any file is refused),
evaluations stored as versions, promotion behind a gate, rollback, alias resolution."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
from pathlib import Path

import pytest
from factory_helpers import TINY_CLASSES, TINY_PARAMS, make_workspace, synthetic_dota

from casemate.errors import IntegrityError, NotFound, PermissionDenied, UsageError
from casemate.factory import registry
from casemate.factory.datasets import import_dataset
from casemate.factory.jobs import JobStore
from casemate.factory.runner import run_job
from casemate.factory.training import DEFAULTS
from casemate.security.labels import format_label, parse_label


def _train(ws, user, dataset: str, epochs: int) -> str:
    """A training job run in this process (the payload the executors launch)."""
    spec = {"dataset": dataset, "base": None, "holdout": None, "class_map": {}, "classes": list(TINY_CLASSES),
            "name": f"tiny-{epochs}", "params": {**DEFAULTS, **TINY_PARAMS, "width": 8, "crop": 192, "lr": 1e-2, "epochs": epochs},
            "resources": {}}
    label = ws.catalog.get(user, dataset).label
    job = JobStore(ws).create(user, kind="train-detector", label=label, executor="local", spec=spec)
    res = run_job(str(ws.home), job.id)
    assert res is not None, JobStore(ws).get_raw(job.id).log
    return res["model"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One workspace, a DR dataset, a barely trained model (1 step, mAP50 0) and a better one
    (120 steps: mAP50 about 0.06 on its own training scenes, enough for a gate to tell them apart)."""
    root = tmp_path_factory.mktemp("registry")
    ws = make_workspace(root / "ws")
    sam = ws.acting_user("sam")
    ds = import_dataset(ws, sam, synthetic_dota(root / "d", n=8, size=192), fmt="dota", label="DR").dataset.id
    weak = _train(ws, sam, ds, 1)
    strong = _train(ws, sam, ds, 60)
    ws.close()
    return {"home": root / "ws", "dataset": ds, "weak": weak, "strong": strong}


@pytest.fixture
def reg(trained: dict, tmp_path: Path):  # type: ignore[no-untyped-def]
    """A private copy of the trained workspace, so each test may tamper with it."""
    from casemate.workspace import Workspace

    home = tmp_path / "ws"
    shutil.copytree(trained["home"], home, symlinks=True)
    ws = Workspace.open(home)
    yield ws, trained
    ws.close()


def test_a_registered_model_is_signed_derived_and_labelled(reg) -> None:
    ws, t = reg
    sam = ws.acting_user("sam")
    m = registry.load_model(ws, sam, t["strong"])
    assert m.version.parents == (t["dataset"],) and format_label(m.version.label) == "DR"
    man = m.manifest
    assert man["format"] == "casemate-model/1" and man["taxonomy"] == list(TINY_CLASSES)
    assert man["input_size"] == 256 and man["training"]["params"]["epochs"] == 60
    assert man["inputs"][0]["sha256"] == ws.catalog.get(sam, t["dataset"]).sha256
    assert len(man["inputs"][0]["items"]) == 8 and man["code"]["source_sha256"]
    assert (m.folder / "model.onnx").is_file() and (m.folder / "registry.sig").is_file()
    key = ws.home / "keys" / "models_ed25519"
    assert key.stat().st_mode & 0o777 == 0o600
    with pytest.raises(NotFound):
        registry.load_model(ws, ws.acting_user("nora"), t["strong"])


@pytest.mark.parametrize("name", ["model.onnx", "manifest.json", "checkpoint.safetensors", "history.json",
                                  "registry.json", "registry.sig"])
def test_tampering_with_any_file_is_refused(reg, name: str) -> None:
    ws, t = reg
    sam = ws.acting_user("sam")
    folder = registry.load_model(ws, sam, t["strong"]).folder
    p = folder / name
    os.chmod(p, 0o644)
    data = bytearray(p.read_bytes())
    data[len(data) // 2] ^= 0x01
    p.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match=name.replace(".", r"\.")):
        registry.load_model(ws, sam, t["strong"])


def test_a_missing_or_extra_file_is_refused(reg) -> None:
    ws, t = reg
    sam = ws.acting_user("sam")
    folder = registry.load_model(ws, sam, t["strong"]).folder
    (folder / "evil.py").write_text("print('hi')\n")
    with pytest.raises(IntegrityError, match="evil.py is not part of the signed model"):
        registry.load_model(ws, sam, t["strong"])
    (folder / "evil.py").unlink()
    (folder / "history.json").unlink()
    with pytest.raises(IntegrityError, match="history.json is missing"):
        registry.load_model(ws, sam, t["strong"])


def test_altered_catalog_metadata_or_another_key_is_refused(reg) -> None:
    ws, t = reg
    sam = ws.acting_user("sam")
    # An attacker with the database file: versions are immutable only by trigger.
    con = sqlite3.connect(ws.home / "catalog.db")
    con.execute("DROP TRIGGER versions_no_update")
    meta = json.loads(con.execute("SELECT metadata FROM versions WHERE public_id=?", (t["weak"],)).fetchone()[0])
    meta["registry"]["metrics"]["final_loss"] = 0.001
    con.execute("UPDATE versions SET metadata=? WHERE public_id=?", (json.dumps(meta), t["weak"]))
    con.commit()
    con.close()
    with pytest.raises(IntegrityError, match="signature does not verify"):
        registry.load_model(ws, sam, t["weak"])
    registry.load_model(ws, sam, t["strong"])  # the other one is intact
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    other = Ed25519PrivateKey.generate().public_key()
    (ws.home / "keys" / "models_ed25519.pub").write_bytes(
        other.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    with pytest.raises(IntegrityError, match="signature does not verify"):
        registry.load_model(ws, sam, t["strong"])


def test_an_unsigned_model_is_refused(reg, tmp_path: Path) -> None:
    ws, t = reg
    sam = ws.acting_user("sam")
    folder = registry.load_model(ws, sam, t["strong"]).folder
    v = ws.catalog.put(sam, (folder / "model.onnx").read_bytes(), name="x.onnx", kind="model", label="DR",
                       metadata={"manifest": json.loads((folder / "manifest.json").read_text())})
    with pytest.raises(IntegrityError, match="not signed"):
        registry.load_model(ws, sam, v.id)


def test_eval_promote_gate_and_rollback(reg) -> None:
    ws, t = reg
    sam = ws.acting_user("sam")
    ev_w = registry.evaluate_model(ws, sam, t["weak"], t["dataset"])
    ev_s = registry.evaluate_model(ws, sam, t["strong"], t["dataset"])
    assert ev_s.kind == "evaluation" and set(ev_s.parents) == {t["strong"], t["dataset"]}
    assert format_label(ev_s.label) == "DR"
    assert ev_s.metadata["map50"] > ev_w.metadata["map50"], (ev_s.metadata, ev_w.metadata)
    with pytest.raises(PermissionDenied):
        registry.promote(ws, ws.acting_user("dana"), t["weak"], alias="production")
    first = registry.promote(ws, sam, t["weak"], alias="production")
    assert first["previous"] is None and registry.alias_target(ws, "production") == t["weak"]
    with pytest.raises(UsageError, match="--gate"):
        registry.promote(ws, sam, t["strong"], alias="production")
    with pytest.raises(UsageError, match="refused"):
        registry.promote(ws, sam, t["strong"], alias="production", gate=t["dataset"], min_gain=2.0)
    assert registry.alias_target(ws, "production") == t["weak"]
    res = registry.promote(ws, sam, t["strong"], alias="production", gate=t["dataset"])
    assert res["gain"] > 0 and registry.alias_target(ws, "production") == t["strong"]
    # the weaker one cannot come back through the gate ...
    with pytest.raises(UsageError, match="refused"):
        registry.promote(ws, sam, t["weak"], alias="production", gate=t["dataset"])
    # ... only by an explicit, audited rollback
    back = registry.rollback(ws, sam, "production")
    assert back == {"alias": "production", "model": t["weak"], "previous": t["strong"]}
    assert registry.resolve_model(ws, sam, "production").version.id == t["weak"]
    registry.rollback(ws, sam, "production")
    assert registry.alias_target(ws, "production") is None
    with ws.transaction():
        pass
    actions = [(e.action, e.target) for e in ws.audit.tail(500)]
    assert actions.count(("alias.set", "production")) == 2
    assert actions.count(("alias.rollback", "production")) == 2
    assert ("refused", "production") in actions
    assert ws.audit.verify().ok


def test_resolved_production_model_is_hidden_from_lower_readers(reg) -> None:
    ws, t = reg
    sam = ws.acting_user("sam")
    registry.promote(ws, sam, t["strong"], alias="production")
    assert (registry.resolve_model(ws, sam, "production").folder / "model.onnx").is_file()
    with pytest.raises(NotFound):
        registry.resolve_model(ws, ws.acting_user("nora"), "production")


def test_a_derived_model_label_never_goes_down(reg) -> None:
    ws, t = reg
    sam = ws.acting_user("sam")
    m = registry.load_model(ws, sam, t["strong"])
    ds = ws.catalog.get(sam, t["dataset"])
    from casemate.factory.datasets import get_dataset

    with pytest.raises(UsageError, match="below"):
        registry.register_model(ws, sam, m.folder, dataset=ds, dataset_manifest=get_dataset(ws, sam, ds.id)[1],
                                label="NP")
    assert parse_label("DR") == m.version.label


def test_detect_with_the_production_model_and_lineage_labels_never_go_down(reg, cm) -> None:
    """dataset -> model -> detections, through the detector's own command; labels only go up."""
    ws, t = reg
    sam = ws.acting_user("sam")
    registry.promote(ws, sam, t["strong"], alias="production")
    ref = registry.resolve_detector_ref(ws, sam, "production")
    assert ref == t["strong"]
    from casemate.factory.datasets import get_dataset

    image = get_dataset(ws, sam, t["dataset"])[1]["items"][0]["image"]
    rc, out, err = cm("--as", "sam", "detect", image, "--model", ref, "--workers", "1", "--json")
    assert rc == 0, err
    det = json.loads(out)[0]
    assert det["model_version"] == t["strong"]
    tree = ws.catalog.lineage(sam, det["version"])

    def walk(node: dict, seen: list) -> None:
        seen.append(node["kind"])
        for p in node["parents"]:
            assert parse_label(node["label"]).dominates(parse_label(p["label"])), (node, p)
            walk(p, seen)

    kinds: list = []
    walk(tree, kinds)
    assert {"detections", "model", "dataset", "annotation", "image"} <= set(kinds)
    # a tampered production model is refused before it detects anything
    folder = registry.load_model(ws, sam, "production").folder
    os.chmod(folder / "model.onnx", 0o644)
    with open(folder / "model.onnx", "ab") as fh:
        fh.write(b"\0")
    with pytest.raises(IntegrityError):
        registry.resolve_detector_ref(ws, sam, "production")
