"""The imagery service: every input validated before anything runs or is stored; one Johnson table;
manifests validated with errors that name the key; bands and stretch recorded."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from casemate.errors import IntegrityError, UsageError
from casemate.imagery.dri import DriPolicy
from casemate.imagery.runtime import PACKAGE_MODELS, load_detector, validate_manifest
from casemate.imagery.service import detect_source
from casemate.johnson import JOHNSON_PX
from casemate.workspace import Workspace
from imagery.helpers import png_path


def _count(ws: Workspace, kind: str) -> int:
    return sum(1 for _ in ws.catalog.iter_versions(ws.acting_user("admin"), kind=kind))


@pytest.mark.parametrize("args, option", [
    (["--tile", "128"], "--overlap 128"),  # the default overlap equals the tile: was a ValueError
    (["--tile", "32"], "--tile 32"),
    (["--overlap", "-1"], "--overlap -1"),
    (["--batch", "0"], "--batch 0"),
    (["--gsd", "0"], "--gsd 0"),
    (["--bands", "5"], "--bands 5"),
    (["--bands", "1,2"], "--bands 1,2"),
])
def test_bad_options_are_usage_errors_and_store_nothing(home: Path, tmp_path: Path, capsys: pytest.CaptureFixture,
                                                        args: list[str], option: str) -> None:
    from casemate.cli import main

    Workspace.init(home).close()
    png = png_path(tmp_path, seed=4)
    capsys.readouterr()
    rc = main(["--home", str(home), "detect", str(png), "--label", "NP", *args])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert option in err and "internal error" not in err
    with Workspace.open(home) as ws:
        assert _count(ws, "image") == 0 and _count(ws, "detections") == 0 and _count(ws, "model") == 0


def test_a_bad_second_raster_stores_nothing_for_the_first(home: Path, tmp_path: Path) -> None:
    from casemate.imagery.service import detect_sources

    good = png_path(tmp_path, seed=4)
    bad = tmp_path / "bad.tif"
    bad.write_text("not an image")
    with Workspace.init(home) as ws:
        with pytest.raises(UsageError, match="bad.tif"):
            detect_sources(ws, ws.acting_user("admin"), [str(good), str(bad)], label="NP")
        assert _count(ws, "image") == 0 and _count(ws, "detections") == 0


def test_service_stores_detections_derived_from_image_and_model(home: Path, tmp_path: Path) -> None:
    with Workspace.init(home) as ws:
        admin = ws.acting_user("admin")
        res = detect_source(ws, admin, str(png_path(tmp_path, seed=6)), label="DR", tile=128, overlap=32)
        assert set(res.geojson.parents) == {res.image.id, res.model.id}
        assert str(res.geojson.label) == "DR"
        assert res.meta["stats"]["tile"] == 128 and res.meta["bands"]["used"] == [1, 2, 3]


def test_identification_uses_the_shared_johnson_table() -> None:
    assert JOHNSON_PX["I"] == 12.8
    assert DriPolicy().ceiling(12.9) == "I"  # the old private table said 13.0 px
    assert DriPolicy().ceiling(12.7) == "R"


def test_manifest_errors_name_the_key(tmp_path: Path) -> None:
    good = json.loads((PACKAGE_MODELS / "default" / "manifest.json").read_text())
    for key, value, needle in (("input_size", "big", "input_size"), ("adapter", "ssd", "adapter"),
                               ("classes", [], "classes"), ("training_gsd_m", [1.0, 0.2], "training_gsd_m"),
                               ("score_threshold", 2, "score_threshold")):
        with pytest.raises(UsageError, match=needle):
            validate_manifest({**good, key: value}, "m.json")
    assert validate_manifest(good)["classes"] == good["classes"]


def test_altered_model_file_is_refused_before_load(tmp_path: Path) -> None:
    d = tmp_path / "m"
    d.mkdir()
    (d / "manifest.json").write_text((PACKAGE_MODELS / "default" / "manifest.json").read_text())
    onnx = bytearray((PACKAGE_MODELS / "default" / "model.onnx").read_bytes())
    onnx[-10] ^= 0xFF
    (d / "model.onnx").write_bytes(bytes(onnx))
    with pytest.raises(IntegrityError, match="sha256"):
        load_detector(d)


def test_four_band_uint16_reads_the_chosen_bands_and_records_the_stretch(tmp_path: Path) -> None:
    from casemate.imagery.raster import RasterSource

    p = tmp_path / "rgbn.tif"
    rng = np.random.default_rng(0)
    data = np.stack([np.full((64, 64), v, dtype=np.uint16) for v in (100, 200, 300, 4000)])
    data[:, :, :32] += rng.integers(0, 50, (4, 64, 32), dtype=np.uint16)
    with rasterio.open(p, "w", driver="GTiff", width=64, height=64, count=4, dtype="uint16",
                       crs="EPSG:32631", transform=from_origin(500000, 5000000, 0.3, 0.3)) as dst:
        dst.write(data)
    with RasterSource(p) as src:
        assert src.bands == [1, 2, 3]
    with RasterSource(p, bands="4,3,2") as src:
        win = src.read_window(0, 0, 64, 64)
        info = src.band_info()
    assert info["used"] == [4, 3, 2] and info["dtype"] == "uint16" and info["count"] == 4
    lo, hi = info["stretch"]["ranges"][0]
    assert 4000 <= lo < hi <= 4050  # band 4's own range, not band 1's
    assert win.dtype == np.uint8 and win[:, 32:].max() == 0 and win[:, :32].max() > 200
    with pytest.raises(UsageError, match="4 band"):
        RasterSource(p, bands="5")
