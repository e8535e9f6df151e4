"""Georeferencing on real SpaceNet imagery: round trips, outputs on the real footprints, ceilings."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import shapely
import shapely.ops
from pyproj import CRS, Transformer
from shapely.geometry import shape

from casemate.imagery.dri import DriPolicy
from casemate.imagery.export import read_geopackage_polygons, write_geojson, write_geopackage
from casemate.imagery.pipeline import Detection, DetectionResult
from casemate.imagery.raster import RasterSource
from imagery.helpers import real_data as shared_data

CASES = [("sample_geotiff.tif", "geotiff_labels.geojson"),
         ("sample_geotiff_custom_proj.tif", "geotiff_custom_proj_labels.geojson")]


def footprints(labels: Path, crs_wkt: str) -> list:
    doc = json.loads(labels.read_text())
    name = ((doc.get("crs") or {}).get("properties") or {}).get("name")
    polys = [shape(f["geometry"]) for f in doc["features"] if f.get("geometry")]
    if name:  # declared CRS: bring it to the raster's (a no-op for the UTM sample)
        tr = Transformer.from_crs(CRS.from_user_input(name), CRS.from_wkt(crs_wkt), always_xy=True)
        polys = [shapely.ops.transform(tr.transform, p) for p in polys]
    return [p for p in polys if p.area > 0]


@pytest.mark.parametrize("tif", [c[0] for c in CASES])
def test_pixel_crs_wgs84_round_trip_under_a_hundredth_of_a_pixel(tif: str) -> None:
    path = shared_data("imagery", "spacenet-atlanta", tif)
    with RasterSource(path) as src:
        assert src.georef.crs_wkt is not None
        rng = np.random.default_rng(0)
        px = np.concatenate([rng.uniform(0, src.width, 500), [0, src.width, 0.5]])
        py = np.concatenate([rng.uniform(0, src.height, 500), [0, src.height, 0.5]])
        x, y = src.pixel_to_crs(px, py)
        lon, lat = src.to_wgs84().transform(x, y)
        assert np.all(np.abs(lat) < 90) and np.all(np.abs(lon) < 180)
        back = Transformer.from_crs(CRS.from_epsg(4326), CRS.from_wkt(src.georef.crs_wkt), always_xy=True)
        x2, y2 = back.transform(lon, lat)
        px2, py2 = src.crs_to_pixel(x2, y2)
        err = np.hypot(px2 - px, py2 - py)
        assert err.max() < 0.01, err.max()


def test_custom_crs_has_no_epsg_and_still_georeferences() -> None:
    with RasterSource(shared_data("imagery", "spacenet-atlanta", CASES[1][0])) as src:
        assert src.georef.epsg is None and src.georef.gsd_m == pytest.approx(30.0)
        lon, lat = src.to_wgs84().transform(*src.pixel_to_crs(np.array([256.0]), np.array([256.0])))
        assert -110 < lon[0] < -95 and 15 < lat[0] < 50  # the western United States


def _result_from_footprints(src: RasterSource, polys: list) -> DetectionResult:
    """Detections shaped like the real footprints (their minimum rotated rectangles, in pixels)."""
    dets = []
    for p in polys:
        ring = np.asarray(p.minimum_rotated_rectangle.exterior.coords)[:4]
        cx, cy = src.crs_to_pixel(ring[:, 0], ring[:, 1])
        corners = [(float(a), float(b)) for a, b in zip(cx, cy, strict=True)]
        c = (float(cx.mean()), float(cy.mean()))
        X, Y = src.pixel_to_crs(np.array([c[0]]), np.array([c[1]]))
        dets.append(Detection(label="building", class_path=[], dri_level="D", johnson_ceiling="I", score=1.0,
                              pixels_on_target=10.0, gsd_m=src.georef.gsd_m, length_m=None, width_m=None,
                              heading_deg=None, centre_px=c, corners_px=corners,
                              centre_crs=(float(X[0]), float(Y[0]))))
    return DetectionResult(str(src.path), src.width, src.height, src.georef, "crs", dets, {"name": "oracle"})


@pytest.mark.parametrize("tif,labels", CASES)
def test_outputs_land_on_the_real_footprints(tif: str, labels: str, tmp_path: Path) -> None:
    path = shared_data("imagery", "spacenet-atlanta", tif)
    with RasterSource(path) as src:
        polys = footprints(shared_data("imagery", "spacenet-atlanta", labels), src.georef.crs_wkt)
        assert len(polys) >= 5
        res = _result_from_footprints(src, polys)
        gj = json.loads(write_geojson(res, tmp_path / "d.geojson").read_text())
        write_geopackage(res, tmp_path / "d.gpkg")
        to_wgs = src.to_wgs84()
    # GeoJSON, WGS84 lon/lat: compare with the footprints projected independently.
    assert "crs" not in gj and gj["casemate"]["coordinates"] == "wgs84"
    out = [shape(f["geometry"]) for f in gj["features"]]
    ref = [shapely.ops.transform(to_wgs.transform, p) for p in polys]
    ious = []
    for o, r in zip(out, ref, strict=True):
        assert o.exterior.is_ccw  # RFC 7946 right-hand rule
        ious.append(o.intersection(r).area / o.union(r).area)
        # The rectangle holds the footprint (a few cm of slack for the curved projection).
        assert r.difference(o).area < 0.02 * r.area
    # Rectangles around real, often L-shaped, buildings: most overlap them closely.
    assert min(ious) > 0.3 and np.median(ious) > 0.7, ious
    # GeoPackage, the raster's own CRS.
    back = read_geopackage_polygons(tmp_path / "d.gpkg")
    ious = [b.intersection(r).area / b.union(r).area for b, r in zip(back, polys, strict=True)]
    assert min(ious) > 0.3 and np.median(ious) > 0.7
    con = sqlite3.connect(tmp_path / "d.gpkg")
    assert con.execute("PRAGMA application_id").fetchone()[0] == 0x47504B47
    srs = con.execute("SELECT srs_id, organization, definition FROM gpkg_spatial_ref_sys "
                      "WHERE srs_id = (SELECT srs_id FROM gpkg_geometry_columns)").fetchone()
    con.close()
    if tif == CASES[0][0]:
        assert srs[:2] == (32616, "EPSG")
    else:
        assert srs[0] >= 100000 and "Albers" in srs[2]


def test_ceilings_at_half_metre() -> None:
    with RasterSource(shared_data("imagery", "spacenet-atlanta", CASES[0][0])) as src:
        gsd = src.georef.gsd_m
    assert gsd == pytest.approx(0.5)
    pol = DriPolicy()
    assert pol.ceiling(1.8 / gsd) == "D"  # a car: detected, not recognised
    assert pol.ceiling(2.5 / gsd) == "D"  # a truck: 5 px across, still below recognition
    assert pol.ceiling(8.0 / gsd) == "I"  # a 30 m airliner's fuselage+wings box is wide enough


def test_default_pipeline_runs_on_real_uint16_imagery(tmp_path: Path) -> None:
    from casemate.imagery.pipeline import detect_raster
    from casemate.imagery.runtime import load_detector

    res = detect_raster(shared_data("imagery", "spacenet-atlanta", CASES[0][0]), load_detector("default"),
                        workers=1)
    assert res.coordinates == "crs" and res.georef.epsg == 32616 and res.stats["tiles"] >= 4
    for d in res.detections:  # whatever it finds, it never claims recognition of a car-sized object
        if d.width_m is not None and d.width_m < 3.5:
            assert d.dri_level == "D"
        assert d.centre_lonlat is not None
