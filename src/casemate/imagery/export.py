"""Outputs: GeoJSON in WGS84 (RFC 7946) and a GeoPackage in the raster's own CRS.

The GeoPackage is written with sqlite3 following OGC 12-128r18 (GeoPackage 1.3): the required
tables, a feature table with GeoPackage binary geometries (header + little-endian WKB), the CRS
as WKT (custom CRSs get an srs_id from 100000 up). Files appear only complete (temp + rename).
"""

from __future__ import annotations

import json
import sqlite3
import struct
from pathlib import Path

import numpy as np

from casemate.fileutil import atomic_path
from casemate.imagery.pipeline import Detection, DetectionResult

_PROPS = ("label", "dri_level", "johnson_ceiling", "score", "pixels_on_target", "gsd_m", "length_m",
          "width_m", "heading_deg", "model_digest")


def _props(d: Detection) -> dict:
    p = {k: getattr(d, k) for k in _PROPS}
    p["class_path"] = d.class_path
    p["centre_px"] = list(d.centre_px)
    if d.centre_lonlat:
        p["centre_lonlat"] = list(d.centre_lonlat)
    return p


def _ccw(ring: list[list[float]]) -> list[list[float]]:
    """RFC 7946 right-hand rule: exterior rings counter-clockwise (in lon/lat)."""
    area = sum(ring[i][0] * ring[i + 1][1] - ring[i + 1][0] * ring[i][1] for i in range(len(ring) - 1))
    return ring if area > 0 else ring[::-1]


def _geo_meta(result: DetectionResult, wgs84: bool) -> dict:
    meta = {"source": result.source, "coordinates": "wgs84" if wgs84 else "pixel", "model": result.model,
            "stats": result.stats, "notes": result.notes, "width": result.width, "height": result.height,
            "gsd_m": result.georef.gsd_m, "crs": result.georef.crs_name}
    if not wgs84:
        meta["warning"] = ("not georeferenced: coordinates are image pixels (x right, y down), not "
                           "RFC 7946 longitude/latitude")
    return meta


def _features(result: DetectionResult, chunk: int = 2048):
    """GeoJSON features, projected in chunks (memory stays flat for any number of detections)."""
    tr = None
    if result.georef.crs_wkt:
        from pyproj import CRS, Transformer

        tr = Transformer.from_crs(CRS.from_wkt(result.georef.crs_wkt), CRS.from_epsg(4326), always_xy=True)
    a, b, c, d, e, f = result.georef.transform
    dets = result.detections
    for start in range(0, len(dets), chunk):
        part = dets[start:start + chunk]
        px = np.array([list(x.corners_px) + [x.corners_px[0]] for x in part]).reshape(-1, 5, 2)
        if tr is not None:
            X = a * px[..., 0] + b * px[..., 1] + c
            Y = d * px[..., 0] + e * px[..., 1] + f
            lon, lat = tr.transform(X.ravel(), Y.ravel())
            coords = np.stack([np.asarray(lon).reshape(X.shape), np.asarray(lat).reshape(X.shape)], axis=2)
            coords = np.round(coords, 8)
        else:
            coords = np.round(px, 3)
        for det, ring in zip(part, coords, strict=True):
            r = ring.tolist()
            if tr is not None:
                r = _ccw(r)
            yield {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [r]},
                   "properties": _props(det)}


def write_geojson(result: DetectionResult, path: Path, extra_meta: dict | None = None) -> Path:
    """Stream the FeatureCollection to `path`, one feature per line."""
    meta = {**_geo_meta(result, bool(result.georef.crs_wkt)), **(extra_meta or {})}
    with atomic_path(Path(path)) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        fh.write('{"type": "FeatureCollection", "casemate": ' + json.dumps(meta) + ', "features": [\n')
        first = True
        for feat in _features(result):
            if not first:
                fh.write(",\n")
            fh.write(json.dumps(feat))
            first = False
        fh.write("\n]}\n")
    return Path(path)


def _gpkg_geom(srs_id: int, ring: np.ndarray) -> bytes:
    """GeoPackage binary: 'GP', version 0, flags (little-endian, envelope [minx,maxx,miny,maxy])."""
    header = b"GP" + bytes([0, 0b00000011]) + struct.pack("<i", srs_id)
    env = struct.pack("<4d", ring[:, 0].min(), ring[:, 0].max(), ring[:, 1].min(), ring[:, 1].max())
    wkb = struct.pack("<BII", 1, 3, 1) + struct.pack("<I", len(ring)) + ring.astype("<f8").tobytes()
    return header + env + wkb


def write_geopackage(result: DetectionResult, path: Path, table: str = "detections") -> Path:
    """Polygons in the raster's CRS (pixel coordinates, srs_id 0 'undefined', without georef)."""
    g = result.georef

    with atomic_path(Path(path)) as tmp:
        tmp.unlink(missing_ok=True)
        con = sqlite3.connect(tmp)
        try:
            con.execute("PRAGMA application_id = 1196444487")  # 'GPKG'
            con.execute("PRAGMA user_version = 10300")
            con.executescript("""
            CREATE TABLE gpkg_spatial_ref_sys (srs_name TEXT NOT NULL, srs_id INTEGER PRIMARY KEY,
              organization TEXT NOT NULL, organization_coordsys_id INTEGER NOT NULL,
              definition TEXT NOT NULL, description TEXT);
            CREATE TABLE gpkg_contents (table_name TEXT NOT NULL PRIMARY KEY, data_type TEXT NOT NULL,
              identifier TEXT UNIQUE, description TEXT DEFAULT '',
              last_change DATETIME NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
              min_x DOUBLE, min_y DOUBLE, max_x DOUBLE, max_y DOUBLE, srs_id INTEGER,
              CONSTRAINT fk_gc_r_srs_id FOREIGN KEY (srs_id) REFERENCES gpkg_spatial_ref_sys(srs_id));
            CREATE TABLE gpkg_geometry_columns (table_name TEXT NOT NULL, column_name TEXT NOT NULL,
              geometry_type_name TEXT NOT NULL, srs_id INTEGER NOT NULL, z TINYINT NOT NULL,
              m TINYINT NOT NULL, CONSTRAINT pk_geom_cols PRIMARY KEY (table_name, column_name));
            """)
            wgs = ('GEOGCS["WGS 84",DATUM["WGS_1984",SPHEROID["WGS 84",6378137,298.257223563]],'
                   'PRIMEM["Greenwich",0],UNIT["degree",0.0174532925199433],AUTHORITY["EPSG","4326"]]')
            con.executemany("INSERT INTO gpkg_spatial_ref_sys VALUES (?,?,?,?,?,?)", [
                ("WGS 84 geodetic", 4326, "EPSG", 4326, wgs, "longitude/latitude WGS84"),
                ("Undefined cartesian SRS", -1, "NONE", -1, "undefined", "undefined cartesian"),
                ("Undefined geographic SRS", 0, "NONE", 0, "undefined", "undefined geographic"),
            ])
            if g.crs_wkt and g.epsg and g.epsg != 4326:
                srs_id = g.epsg
                con.execute("INSERT INTO gpkg_spatial_ref_sys VALUES (?,?,?,?,?,?)",
                            (g.crs_name or f"EPSG:{g.epsg}", srs_id, "EPSG", g.epsg, g.crs_wkt, ""))
            elif g.crs_wkt and g.epsg == 4326:
                srs_id = 4326
            elif g.crs_wkt:
                srs_id = 100000
                con.execute("INSERT INTO gpkg_spatial_ref_sys VALUES (?,?,?,?,?,?)",
                            (g.crs_name or "custom", srs_id, "NONE", srs_id, g.crs_wkt, "custom CRS of the raster"))
            else:
                srs_id = -1  # pixel coordinates: undefined cartesian
            con.execute(f'CREATE TABLE "{table}" (fid INTEGER PRIMARY KEY AUTOINCREMENT, geom POLYGON, '
                        "label TEXT, dri_level TEXT, johnson_ceiling TEXT, score REAL, pixels_on_target REAL, "
                        "gsd_m REAL, length_m REAL, width_m REAL, heading_deg REAL, model_digest TEXT, "
                        "class_path TEXT, centre_x REAL, centre_y REAL, lon REAL, lat REAL)")
            a, b, c, d, e, f = g.transform
            lo, hi = np.full(2, np.inf), np.full(2, -np.inf)  # running bbox: no per-detection arrays kept
            for det in result.detections:
                px = np.array(det.corners_px + [det.corners_px[0]])
                if g.crs_wkt:
                    ring = np.column_stack([a * px[:, 0] + b * px[:, 1] + c, d * px[:, 0] + e * px[:, 1] + f])
                else:
                    ring = px
                lo, hi = np.minimum(lo, ring.min(axis=0)), np.maximum(hi, ring.max(axis=0))
                centre = det.centre_crs or det.centre_px
                lon, lat = det.centre_lonlat or (None, None)
                con.execute(f'INSERT INTO "{table}" (geom, label, dri_level, johnson_ceiling, score, '
                            "pixels_on_target, gsd_m, length_m, width_m, heading_deg, model_digest, class_path, "
                            "centre_x, centre_y, lon, lat) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                            (_gpkg_geom(srs_id, ring), det.label, det.dri_level, det.johnson_ceiling, det.score,
                             det.pixels_on_target, det.gsd_m, det.length_m, det.width_m, det.heading_deg,
                             det.model_digest, json.dumps(det.class_path), centre[0], centre[1], lon, lat))
            bbox = (*lo, *hi) if result.detections else (None,) * 4
            con.execute("INSERT INTO gpkg_contents (table_name, data_type, identifier, description, min_x, "
                        "min_y, max_x, max_y, srs_id) VALUES (?,?,?,?,?,?,?,?,?)",
                        (table, "features", table, f"casemate detections on {Path(result.source).name}",
                         *[None if v is None else float(v) for v in bbox], srs_id))
            con.execute("INSERT INTO gpkg_geometry_columns VALUES (?,?,?,?,?,?)",
                        (table, "geom", "POLYGON", srs_id, 0, 0))
            con.commit()
        finally:
            con.close()
    return Path(path)


def read_geopackage_polygons(path: Path, table: str = "detections") -> list:
    """Read back the polygons (shapely) of a GeoPackage written here: for tests and tools."""
    import shapely

    con = sqlite3.connect(path)
    try:
        rows = con.execute(f'SELECT geom FROM "{table}"').fetchall()
    finally:
        con.close()
    out = []
    for (blob,) in rows:
        flags = blob[3]
        env_len = {0: 0, 1: 32, 2: 48, 3: 48, 4: 64}[(flags >> 1) & 0b111]
        out.append(shapely.from_wkb(bytes(blob[8 + env_len:])))
    return out
