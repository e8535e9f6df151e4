"""Labelled data sets: DOTA folders (images/ + labelTxt/) and GeoJSON labels over GeoTIFFs.

No torch here: evaluation and training share these readers.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from casemate.errors import UsageError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")


@dataclass
class Box:
    """An oriented box in pixels: centre, length (longer side), width, heading (radians)."""

    cx: float
    cy: float
    length: float
    width: float
    heading: float
    cls: int
    difficult: bool = False

    def corners(self) -> np.ndarray:
        c, s = math.cos(self.heading), math.sin(self.heading)
        local = np.array([[self.length / 2, -self.width / 2], [self.length / 2, self.width / 2],
                          [-self.length / 2, self.width / 2], [-self.length / 2, -self.width / 2]])
        return local @ np.array([[c, -s], [s, c]]).T + np.array([self.cx, self.cy])


@dataclass
class Sample:
    image_path: Path
    boxes: list[Box]
    gsd: float | None = None
    window: tuple[int, int, int, int] | None = None  # col, row, width, height inside image_path
    extra: dict = field(default_factory=dict)


def box_from_corners(pts: np.ndarray, cls: int, difficult: bool = False) -> Box:
    """DOTA corners -> Box. The heading points from the centre to the middle of the first short edge."""
    pts = np.asarray(pts, dtype=np.float64).reshape(4, 2)
    centre = pts.mean(axis=0)
    e1 = np.linalg.norm(pts[1] - pts[0])
    e2 = np.linalg.norm(pts[2] - pts[1])
    if e1 <= e2:
        front = (pts[0] + pts[1]) / 2
        length, width = e2, e1
    else:
        front = (pts[1] + pts[2]) / 2
        length, width = e1, e2
    d = front - centre
    heading = math.atan2(d[1], d[0]) % (2 * math.pi)
    return Box(float(centre[0]), float(centre[1]), float(length), float(width), heading, cls, difficult)


def class_index(name: str, classes: list[str] | tuple[str, ...]) -> int | None:
    """A label's class: the full path or its last part (DOTA files often hold just 'tanker')."""
    if name in classes:
        return list(classes).index(name)
    for i, c in enumerate(classes):
        if c.rsplit("/", 1)[-1] == name:
            return i
    return None


def read_dota(label_path: Path, classes: list[str] | tuple[str, ...]) -> tuple[list[Box], float | None]:
    boxes: list[Box] = []
    gsd = None
    for n, line in enumerate(label_path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        if line.startswith("gsd:"):
            try:
                gsd = float(line[4:])
            except ValueError:
                gsd = None
            continue
        if line.startswith("imagesource:"):
            continue
        parts = line.split()
        if len(parts) < 9:
            raise UsageError(f"{label_path}:{n}: expected 'x1 y1 ... x4 y4 class [difficult]'")
        try:
            pts = np.array([float(v) for v in parts[:8]])
        except ValueError:
            raise UsageError(f"{label_path}:{n}: corner coordinates must be numbers") from None
        idx = class_index(parts[8], classes)
        if idx is None:
            continue  # a class this model does not know
        difficult = len(parts) > 9 and parts[9] == "1"
        boxes.append(box_from_corners(pts, idx, difficult))
    return boxes, gsd


def _geojson_samples(tif: Path, geojson: Path, classes: list[str] | tuple[str, ...]) -> Sample:
    import rasterio
    import shapely.affinity
    import shapely.ops
    from pyproj import CRS, Transformer
    from shapely.geometry import shape

    try:
        doc = json.loads(geojson.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UsageError(f"{geojson}: not valid GeoJSON ({exc})") from None
    with rasterio.open(tif) as src:
        inv = ~src.transform
        dst_crs = CRS.from_wkt(src.crs.to_wkt()) if src.crs else None
        gsd = abs(src.transform.a)
    src_crs_name = ((doc.get("crs") or {}).get("properties") or {}).get("name")
    src_crs = CRS.from_user_input(src_crs_name) if src_crs_name else CRS.from_epsg(4326)
    tr = Transformer.from_crs(src_crs, dst_crs, always_xy=True) if dst_crs and src_crs != dst_crs else None
    boxes = []
    for feat in doc.get("features", []):
        props = feat.get("properties") or {}
        name = props.get("class") or props.get("label") or props.get("category")
        idx = class_index(str(name), classes) if name else None
        if idx is None or not feat.get("geometry"):
            continue
        geom = shape(feat["geometry"])
        # Pixels first, then the rectangle: a rectangle fitted in degrees is skewed on the ground.
        if tr is not None:
            geom = shapely.ops.transform(tr.transform, geom)
        geom = shapely.affinity.affine_transform(geom, [inv.a, inv.b, inv.d, inv.e, inv.c, inv.f])
        px = np.asarray(geom.minimum_rotated_rectangle.exterior.coords)[:4]
        boxes.append(box_from_corners(px, idx))
    return Sample(tif, boxes, gsd)


def load_dataset(root: Path, classes: list[str] | tuple[str, ...]) -> list[Sample]:
    """Every labelled image under root (DOTA layout or GeoTIFF + same-named .geojson)."""
    root = Path(root)
    if not root.is_dir():
        raise UsageError(f"{root}: not a folder (expected images/ + labelTxt/, or *.tif + *.geojson)")
    samples: list[Sample] = []
    if (root / "labelTxt").is_dir():
        images = {p.stem: p for p in sorted((root / "images").glob("*")) if p.suffix.lower() in IMAGE_SUFFIXES}
        for label in sorted((root / "labelTxt").glob("*.txt")):
            if label.stem not in images:
                continue
            boxes, gsd = read_dota(label, classes)
            samples.append(Sample(images[label.stem], boxes, gsd))
    for tif in sorted(list(root.glob("*.tif")) + list(root.glob("*.tiff"))):
        gj = tif.with_suffix(".geojson")
        if gj.exists():
            samples.append(_geojson_samples(tif, gj, classes))
    if not samples:
        raise UsageError(f"{root}: no labelled images found (expected images/ + labelTxt/ in DOTA "
                         "format, or *.tif with a same-named *.geojson)")
    return samples


def read_rgb(path: Path) -> np.ndarray:
    """A whole (small) image as HxWx3 uint8, the way the detector sees it."""
    import warnings

    import rasterio
    from rasterio.errors import NotGeoreferencedWarning

    from casemate.imagery.raster import to_uint8_rgb

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(path) as src:
            data = src.read()
    return to_uint8_rgb(data, None)
