"""Catalog integration: inputs ingested with a label, the model a catalog version, detections
derived from both (label at least the lub of theirs), invisible to users who may not read them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from casemate.cli import main
from casemate.errors import NotFound
from casemate.security.labels import parse_label
from casemate.workspace import Workspace
from imagery.helpers import png_path


def run(capsys: pytest.CaptureFixture, home: Path, *args: str, user: str | None = None) -> tuple[int, str, str]:
    capsys.readouterr()
    argv = ["--home", str(home)] + (["--as", user] if user else []) + list(args)
    rc = main(argv)
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_detect_stores_a_version_derived_from_image_and_model(tiny_model: dict, home: Path, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture) -> None:
    with Workspace.init(home) as ws:
        admin = ws.acting_user("admin")
        ws.users.add(admin, "nora", "NP", ["analyst"])
        ws.users.add(admin, "sam", "S//ALPHA", ["analyst"])
    rc, model_id, err = run(capsys, home, "imagery", "register", str(tiny_model["dir"]), "--label", "S")
    assert rc == 0, err
    model_id = model_id.strip()
    # Registering the same ONNX again finds the existing version.
    assert run(capsys, home, "imagery", "register", str(tiny_model["dir"]))[1].strip() == model_id
    png = png_path(tmp_path, seed=5)
    out_file = tmp_path / "out" / "dets.geojson"
    rc, out, err = run(capsys, home, "detect", str(png), "--label", "DR", "--model", model_id,
                       "--out", str(out_file), "--json")
    assert rc == 0, err
    res = json.loads(out)[0]
    assert res["coordinates"] == "pixel"
    assert any("no georeferencing" in n for n in res["notes"])
    doc = json.loads(out_file.read_text())
    assert doc["casemate"]["coordinates"] == "pixel" and "not georeferenced" in doc["casemate"]["warning"]
    assert out_file.with_suffix(".gpkg").exists()
    with Workspace.open(home) as ws:
        cat = ws.catalog
        admin, nora, sam = (ws.acting_user(n) for n in ("admin", "nora", "sam"))
        v = cat.get(admin, res["version"])
        assert v.kind == "detections" and set(v.parents) == {res["image_version"], model_id}
        assert v.label == parse_label("S")  # lub(DR image, S model)
        assert cat.get(admin, res["image_version"]).label == parse_label("DR")
        stored = json.loads(cat.read_bytes(admin, v.id))
        assert stored["casemate"]["model_version"] == model_id
        assert cat.get(sam, v.id).id == v.id
        with pytest.raises(NotFound):
            cat.get(nora, v.id)  # looks exactly like a missing item
        gp = cat.get(admin, res["gpkg_version"])
        assert gp.metadata["format"] == "gpkg" and set(gp.parents) == set(v.parents)
    # Detect again by catalog id: no new image version, the same model version.
    rc, out, err = run(capsys, home, "detect", res["image_version"], "--model", model_id, "--json")
    assert rc == 0, err
    again = json.loads(out)[0]
    assert again["image_version"] == res["image_version"] and again["model_version"] == model_id
    # nora cannot use what she cannot read: same message as for an id that does not exist.
    rc, _, err_hidden = run(capsys, home, "detect", res["image_version"], user="nora")
    rc2, _, err_missing = run(capsys, home, "detect", "zzzzzzzzzzzz", user="nora")
    assert rc == rc2 == 4
    assert err_hidden.replace(res["image_version"], "X") == err_missing.replace("zzzzzzzzzzzz", "X")


def test_shipped_default_model_is_registered_np(home: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert run(capsys, home, "init")[0] == 0
    rc, out, err = run(capsys, home, "detect", str(png_path(tmp_path, seed=7)), "--label", "NP", "--json")
    assert rc == 0, err
    res = json.loads(out)[0]
    with Workspace.open(home) as ws:
        admin = ws.acting_user("admin")
        m = ws.catalog.get(admin, res["model_version"])
        assert m.kind == "model" and m.label == parse_label("NP")
        assert m.metadata["manifest"]["classes"]
        assert res["model_digest"] == "sha256:" + m.sha256


def test_missing_model_is_a_clear_error(home: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert run(capsys, home, "init")[0] == 0
    rc, _, err = run(capsys, home, "detect", str(png_path(tmp_path)), "--label", "NP", "--model",
                     str(tmp_path / "nope"))
    assert rc == 8 and "imagery train" in err and len(err.strip().splitlines()) == 1
