"""Bad rasters get one clear error line and store nothing; images without georeferencing work in
pixel coordinates and say so."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from casemate.errors import UsageError
from casemate.imagery.raster import RasterSource
from imagery.helpers import png_path

ROOT = Path(__file__).resolve().parents[2]


def casemate(home: Path, *args: str) -> subprocess.CompletedProcess:
    """The real CLI in a subprocess (what a user runs)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "casemate.cli", "--home", str(home), *args],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)


def casemate_inproc(capsys: pytest.CaptureFixture, home: Path, *args: str) -> tuple[int, str, str]:
    """The CLI's entry point in this process (same error handling, no interpreter start-up)."""
    from casemate.cli import main

    capsys.readouterr()
    rc = main(["--home", str(home), *args])
    out = capsys.readouterr()
    return rc, out.out, out.err


def make_geotiff(path: Path, size: int = 300, compress: str | None = "deflate") -> Path:
    data = np.random.default_rng(0).integers(0, 255, (3, size, size), dtype=np.uint8)
    kw = {"compress": compress} if compress else {}
    with rasterio.open(path, "w", driver="GTiff", width=size, height=size, count=3, dtype="uint8",
                       crs="EPSG:32631", transform=from_origin(500000, 5000000, 0.5, 0.5), tiled=True,
                       blockxsize=128, blockysize=128, **kw) as dst:
        dst.write(data)
    return path


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("bad")
    out = {}
    out["empty"] = d / "empty.tif"
    out["empty"].write_bytes(b"")
    out["not_raster"] = d / "notes.tif"
    out["not_raster"].write_text("these are meeting notes, not an image\n" * 20)
    corrupt = bytearray(make_geotiff(d / "c.tif").read_bytes())
    corrupt[8:4000] = os.urandom(3992)
    out["corrupt"] = d / "corrupt.tif"
    out["corrupt"].write_bytes(bytes(corrupt))
    for compress in ("deflate", None):
        whole = make_geotiff(d / f"w_{compress}.tif", size=600, compress=compress).read_bytes()
        out[f"truncated_{compress}"] = d / f"truncated_{compress}.tif"
        out[f"truncated_{compress}"].write_bytes(whole[: len(whole) // 2])
    # A header claiming a gigantic raster in a file of a few kB (sparse tiles).
    for name, side, compress in (("huge_sparse", 60_000, None), ("huge_side", 300_000, "deflate")):
        p = d / f"{name}.tif"
        kw = {"compress": compress} if compress else {}
        with rasterio.open(p, "w", driver="GTiff", width=side, height=side, count=1, dtype="uint8",
                           tiled=False, blockysize=side if side > 100_000 else 1024, sparse_ok=True,
                           BIGTIFF="YES", **kw):
            pass
        assert p.stat().st_size < 5_000_000
        out[name] = p
    return out


@pytest.mark.parametrize("kind", ["empty", "not_raster", "corrupt", "truncated_deflate", "truncated_None",
                                  "huge_sparse", "huge_side"])
def test_bad_raster_is_a_usage_error(bad_inputs: dict[str, Path], kind: str) -> None:
    with pytest.raises(UsageError) as err:
        RasterSource(bad_inputs[kind])
    assert str(bad_inputs[kind]) in err.value.message


def test_bad_inputs_through_cli_store_nothing(bad_inputs: dict[str, Path], home: Path,
                                              capsys: pytest.CaptureFixture) -> None:
    assert casemate(home, "init").returncode == 0
    r = casemate(home, "detect", str(bad_inputs["corrupt"]), "--label", "NP")
    assert r.returncode == 2 and r.stderr.startswith("error: ") and "Traceback" not in r.stderr
    for kind, path in bad_inputs.items():
        rc, _, err = casemate_inproc(capsys, home, "detect", str(path), "--label", "NP")
        assert rc == 2, (kind, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and str(path) in lines[0], (kind, err)
    ls = casemate(home, "ls", "--json")
    assert ls.returncode == 0
    assert json.loads(ls.stdout) == []


def test_missing_label_for_a_file_is_refused(home: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert casemate_inproc(capsys, home, "init")[0] == 0
    rc, _, err = casemate_inproc(capsys, home, "detect", str(make_geotiff(tmp_path / "ok.tif")))
    assert rc == 2 and "--label" in err
    rc, out, _ = casemate_inproc(capsys, home, "ls", "--json")
    assert rc == 0 and json.loads(out) == []


def test_geotiff_gsd_and_crs(tmp_path: Path) -> None:
    with RasterSource(make_geotiff(tmp_path / "g.tif")) as src:
        assert src.georef.epsg == 32631
        assert src.georef.gsd_m == pytest.approx(0.5)
        x, y = src.pixel_to_crs(np.array([10.0]), np.array([20.0]))
        assert (x[0], y[0]) == (500005.0, 4999990.0)


def test_png_without_georeferencing_is_pixel_coordinates(tmp_path: Path) -> None:
    with RasterSource(png_path(tmp_path)) as src:
        assert src.georef.crs_wkt is None and src.georef.gsd_m is None
        assert src.to_wgs84() is None
        tile = src.read_window(-10, -10, 64, 64)
        assert tile.shape == (64, 64, 3) and tile[:10].max() == 0  # outside the raster: zeros
