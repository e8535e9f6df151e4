"""Change between two dates: known changes on detections (exact counts per class and zone, alerts),
stored as a version derived from both with the lub label, and real SpaceNet rasters shifted and
edited."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import Affine

from casemate.cli import main
from casemate.errors import NotFound, UsageError
from casemate.imagery.change import compare, objects_from_geojson
from casemate.imagery.service import compare_sources
from casemate.security.labels import parse_label
from casemate.workspace import Workspace
from imagery.helpers import real_data

LON0, LAT0 = 2.35, 48.85
M_LAT = 1 / 111_195.0  # degrees per metre, north
M_LON = M_LAT / math.cos(math.radians(LAT0))


def _feature(cls: str, east: float, north: float, length: float = 4.5, score: float = 0.9) -> dict:
    lon, lat = LON0 + east * M_LON, LAT0 + north * M_LAT
    h = length / 2
    ring = [[lon - h * M_LON, lat - 1 * M_LAT], [lon + h * M_LON, lat - 1 * M_LAT], [lon + h * M_LON, lat + 1 * M_LAT],
            [lon - h * M_LON, lat + 1 * M_LAT], [lon - h * M_LON, lat - 1 * M_LAT]]
    return {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [ring]},
            "properties": {"class_path": [{"level": "D", "name": cls, "score": score}], "score": score,
                           "length_m": length, "centre_lonlat": [lon, lat]}}


def _doc(feats: list[dict]) -> dict:
    return {"type": "FeatureCollection", "casemate": {"coordinates": "wgs84"}, "features": feats}


def _zones(tmp: Path) -> Path:
    def square(name: str, e0: float, n0: float, e1: float, n1: float, **props: object) -> dict:
        ring = [[LON0 + e * M_LON, LAT0 + n * M_LAT] for e, n in ((e0, n0), (e1, n0), (e1, n1), (e0, n1), (e0, n0))]
        return {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [ring]},
                "properties": {"name": name, **props}}
    p = tmp / "zones.geojson"
    p.write_text(json.dumps({"type": "FeatureCollection", "features": [
        square("car park", 0, 0, 100, 100, alert_threshold=2),
        square("harbour", 200, 0, 400, 100, alert_thresholds={"ship": 1}),
    ]}))
    return p


def known_change_docs() -> tuple[dict, dict]:
    rng = np.random.default_rng(0)
    cars = [(10.0 + 12 * i, 20.0) for i in range(5)]
    ships = [(250.0, 50.0), (320.0, 50.0)]
    before = [_feature("vehicle", e, n) for e, n in cars] + [_feature("ship", e, n, 40) for e, n in ships]
    after = []
    for i, (e, n) in enumerate(cars):
        if i == 1:
            continue  # departed
        if i == 2:
            after.append(_feature("vehicle", e + 6.0, n))  # moved 6 m (gates: 2.25 m same, 10 m moved)
            continue
        after.append(_feature("vehicle", e + rng.normal(0, 0.3), n + rng.normal(0, 0.3)))  # re-detected
    after += [_feature("vehicle", 30.0 + 12 * i, 70.0) for i in range(3)]  # appeared
    after += [_feature("ship", e + 3.0, n) for e, n in ships]  # 3 m on a 40 m ship: unchanged
    after += [_feature("vehicle", 600.0, 600.0)]  # outside every zone
    return _doc(before), _doc(after)


def test_known_changes_counted_per_class_and_zone(tmp_path: Path) -> None:
    from casemate.imagery.change import read_zones

    b, a = known_change_docs()
    res = compare(objects_from_geojson(b), objects_from_geojson(a), zones=read_zones(_zones(tmp_path)))
    car = res.summary["car park"]["vehicle"]
    assert car == {"before": 5, "after": 7, "appeared": 3, "departed": 1, "moved": 1, "unchanged": 3}
    assert res.summary["harbour"]["ship"] == {"before": 2, "after": 2, "appeared": 0, "departed": 0, "moved": 0,
                                              "unchanged": 2}
    assert res.summary["(outside zones)"]["vehicle"]["appeared"] == 1
    moved = [c for c in res.changes if c["change"] == "moved"]
    assert len(moved) == 1 and abs(moved[0]["distance_m"] - 6.0) < 0.1
    # car park: 5 -> 7 reaches its threshold of 2; harbour: ships unchanged, no alert.
    assert res.alerts == [{"zone": "car park", "class": "vehicle", "before": 5, "after": 7, "delta": 2,
                           "threshold": 2}]


def test_change_is_stored_derived_from_both_with_the_lub_label(home: Path, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture) -> None:
    b, a = known_change_docs()
    with Workspace.init(home) as ws:
        admin = ws.acting_user("admin")
        ws.users.add(admin, "dora", "DR", ["analyst"])
        fb, fa = tmp_path / "b.geojson", tmp_path / "a.geojson"
        fb.write_text(json.dumps(b))
        fa.write_text(json.dumps(a))
        vb = ws.catalog.put(admin, fb, name="monday.detections.geojson", kind="detections", label="DR",
                            metadata={"format": "geojson"})
        va = ws.catalog.put(admin, fa, name="friday.detections.geojson", kind="detections", label="S",
                            metadata={"format": "geojson"})
        vb_id, va_id = vb.id, va.id
    capsys.readouterr()
    rc = main(["--home", str(home), "imagery", "compare", vb_id, va_id, "--zones", str(_zones(tmp_path)), "--json"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    res = json.loads(out.out)
    assert res["alerts"][0]["zone"] == "car park"
    with Workspace.open(home) as ws:
        admin, dora = ws.acting_user("admin"), ws.acting_user("dora")
        cv = ws.catalog.get(admin, res["version"])
        assert cv.kind == "change" and set(cv.parents) == {vb_id, va_id}
        assert cv.label == parse_label("S")
        doc = json.loads(ws.catalog.read_bytes(admin, cv.id))
        assert sorted(f["properties"]["change"] for f in doc["features"]).count("appeared") == 4
        with pytest.raises(NotFound):
            ws.catalog.get(dora, cv.id)  # hidden looks like missing
    # The table form names the zones and raises the alert.
    capsys.readouterr()
    rc = main(["--home", str(home), "imagery", "compare", vb_id, va_id, "--zones", str(_zones(tmp_path))])
    text = capsys.readouterr().out
    assert rc == 0 and "car park" in text and "ALERT car park: vehicle 5 -> 7" in text


def test_bad_zones_and_pixel_detections_are_refused_storing_nothing(home: Path, tmp_path: Path) -> None:
    b, a = known_change_docs()
    with Workspace.init(home) as ws:
        admin = ws.acting_user("admin")
        fb, fa = tmp_path / "b.geojson", tmp_path / "a.geojson"
        fb.write_text(json.dumps(b))
        fa.write_text(json.dumps({**a, "casemate": {"coordinates": "pixel"}}))
        vb = ws.catalog.put(admin, fb, name="b.geojson", kind="detections", label="NP", metadata={"format": "geojson"})
        va = ws.catalog.put(admin, fa, name="a.geojson", kind="detections", label="NP", metadata={"format": "geojson"})
        bad = tmp_path / "zones.geojson"
        bad.write_text(json.dumps({"type": "FeatureCollection", "features": [
            {"type": "Feature", "geometry": {"type": "Point", "coordinates": [0, 0]}, "properties": {"name": "x"}}]}))
        with pytest.raises(UsageError, match="not a polygon"):
            compare_sources(ws, admin, vb.id, va.id, zones=bad)
        with pytest.raises(UsageError, match="pixels"):
            compare_sources(ws, admin, vb.id, va.id)
        assert not list(ws.catalog.iter_versions(admin, kind="change"))


def _shifted_copy(src_path: Path, dst: Path, dx: int, dy: int, edits) -> None:
    """dst = src cropped by (dx, dy) px (transform moved accordingly: the same ground), after edits."""
    with rasterio.open(src_path) as src:
        data = src.read()
        profile = src.profile
        transform = src.transform
    data = edits(data.copy())
    out = data[:, dy:, dx:]
    profile.update(width=out.shape[2], height=out.shape[1], transform=transform * Affine.translation(dx, dy))
    with rasterio.open(dst, "w", **profile) as d:
        d.write(out)


@pytest.mark.slow
def test_real_rasters_shifted_and_edited(home: Path, tmp_path: Path) -> None:
    """SpaceNet Atlanta (real, 0.5 m pan): AFTER is BEFORE seen 32 px further (same ground, new
    georeferencing), with a patch of BEFORE's strongest detection copied elsewhere (appeared) and
    the patch of another erased (departed). Objects away from the edits and the edges stay matched."""
    from casemate.imagery.pipeline import detect_raster
    from casemate.imagery.runtime import load_detector

    before = real_data("imagery", "spacenet-atlanta", "sample_geotiff.tif")
    det = load_detector("default")
    res = detect_raster(before, det)
    strong = sorted((d for d in res.detections if 96 < d.centre_px[0] < 800 and 96 < d.centre_px[1] < 800),
                    key=lambda d: -d.score)
    assert len(strong) >= 2, "the default model finds at least two objects on the scene"
    src_obj, gone = strong[0], next(d for d in strong[1:] if math.dist(d.centre_px, strong[0].centre_px) > 120)
    sx, sy = (int(round(v)) // 16 * 16 for v in src_obj.centre_px)
    # Paste target: 32 px multiples away from the source, inside the shifted frame, away from `gone`.
    tx, ty = next((x, y) for x in range(96, 800, 32) for y in range(96, 800, 32)
                  if math.dist((x, y), (sx, sy)) > 200 and math.dist((x, y), gone.centre_px) > 150)
    gx, gy = (int(round(v)) for v in gone.centre_px)

    def edits(data: np.ndarray) -> np.ndarray:
        r = 40
        patch = data[:, sy - r:sy + r, sx - r:sx + r].copy()
        data[:, ty - r:ty + r, tx - r:tx + r] = patch
        data[:, gy - 24:gy + 24, gx - 24:gx + 24] = np.median(data[:, gy - 60:gy + 60, gx - 60:gx + 60])
        return data

    after = tmp_path / "after.tif"
    _shifted_copy(before, after, 32, 32, edits)
    Workspace.init(home).close()
    with Workspace.open(home) as ws:
        admin = ws.acting_user("admin")
        out = compare_sources(ws, admin, str(before), str(after), label="NP", min_score=0.0)
        to_lonlat = _lonlat(before)
        tlon, tlat = to_lonlat(src_obj.centre_px[0] - sx + tx, src_obj.centre_px[1] - sy + ty)
        glon, glat = to_lonlat(*gone.centre_px)
        ch = out.result.changes

        def near(kind: str, lon: float, lat: float, m: float = 4.0) -> bool:
            return any(c["change"] == kind and _metres(c["lonlat"], (lon, lat)) < m for c in ch)

        assert near("appeared", tlon, tlat), "the copied object appears where it was pasted"
        assert near("departed", glon, glat), "the erased object departed"
        # Away from the edits and the frame edges, strong objects are matched between the dates.
        blon, blat = to_lonlat(*src_obj.centre_px)
        assert not near("departed", blon, blat) and not near("appeared", blon, blat)
        assert set(out.change.parents) == {out.before.id, out.after.id}


def _lonlat(path: Path):
    from pyproj import CRS, Transformer

    with rasterio.open(path) as src:
        t, wkt = src.transform, src.crs.to_wkt()
    tr = Transformer.from_crs(CRS.from_wkt(wkt), CRS.from_epsg(4326), always_xy=True)

    def f(px: float, py: float) -> tuple[float, float]:
        x, y = t * (px, py)
        return tr.transform(x, y)
    return f


def _metres(a: tuple[float, float] | list[float], b: tuple[float, float]) -> float:
    from pyproj import Geod

    return Geod(ellps="WGS84").inv(a[0], a[1], b[0], b[1])[2]
