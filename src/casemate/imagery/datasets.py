"""Labelled data sets: DOTA (images/ + labelTxt/), YOLO (images/ + labels/, axis-aligned boxes)
and GeoJSON labels over GeoTIFFs; class names mapped onto the model's taxonomy.

No torch here: evaluation and training share these readers.
"""

from __future__ import annotations

import json
import math
import re
import warnings
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
    cls: int  # the model leaf this box trains (and, with a full path, is scored as)
    difficult: bool = False
    path: tuple[str, ...] = ()  # taxonomy node the label names ("vehicle", "vehicle/car"); () = the leaf
    axis_aligned: bool = False  # an upright envelope, not the object's oriented box (YOLO)

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


# Common and standard dataset names -> taxonomy nodes (DOTA v1 names included). A node above the
# leaves (e.g. "vehicle" for a bus) is scored at the levels it names: a bus counts as a detected vehicle.
DEFAULT_CLASS_MAP: dict[str, str] = {
    "car": "vehicle/car", "van": "vehicle/car", "sedan": "vehicle/car/sedan", "small-vehicle": "vehicle/car",
    "small_vehicle": "vehicle/car", "truck": "vehicle/truck", "large-vehicle": "vehicle/truck",
    "large_vehicle": "vehicle/truck", "tanker": "vehicle/truck/tanker", "bus": "vehicle", "minibus": "vehicle",
    "vehicle": "vehicle", "boat": "ship/boat", "ship": "ship", "vessel": "ship", "plane": "aircraft",
    "airplane": "aircraft", "aircraft": "aircraft", "helicopter": "aircraft",
}


def class_node(name: str, classes: list[str] | tuple[str, ...],
               class_map: dict[str, str] | None = None) -> tuple[int, tuple[str, ...]] | None:
    """A label name -> (leaf index, node path), or None when the taxonomy has no such node.

    Tried in order: a full leaf path, a leaf's last part ('tanker'), the class map (default
    `DEFAULT_CLASS_MAP`, case-insensitive). A node maps to its first leaf for training; the
    class map may name a leaf directly to choose another.
    """
    leaves = [tuple(c.split("/")) for c in classes]
    if name in classes:
        i = list(classes).index(name)
        return i, leaves[i]
    for i, c in enumerate(classes):
        if c.rsplit("/", 1)[-1] == name:
            return i, leaves[i]
    cmap = {k.lower(): v for k, v in (DEFAULT_CLASS_MAP if class_map is None else class_map).items()}
    target = cmap.get(name.lower())
    if not target:
        return None
    node = tuple(p for p in target.split("/") if p)
    for i, leaf in enumerate(leaves):
        if leaf[:len(node)] == node:
            return i, node
    return None


def class_index(name: str, classes: list[str] | tuple[str, ...]) -> int | None:
    """A label's class: the full path or its last part (DOTA files often hold just 'tanker')."""
    hit = class_node(name, classes, {})
    return hit[0] if hit else None


def read_dota(label_path: Path, classes: list[str] | tuple[str, ...],
              class_map: dict[str, str] | None = None) -> tuple[list[Box], float | None]:
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
        hit = class_node(parts[8], classes, class_map)
        if hit is None:
            continue  # a class this model does not know
        difficult = len(parts) > 9 and parts[9] == "1"
        box = box_from_corners(pts, hit[0], difficult)
        box.path = hit[1]
        boxes.append(box)
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


def yolo_names(root: Path) -> list[str] | None:
    """Class names of a YOLO folder: Ultralytics' data.yaml (`names` list or mapping), else a darknet
    classes.txt / *.names; None when the folder does not say."""
    import yaml

    for cand in ("data.yaml", "dataset.yaml"):
        p = root / cand
        if p.is_file():
            try:
                doc = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
            except yaml.YAMLError as exc:
                raise UsageError(f"{p}: not valid YAML ({str(exc).splitlines()[0]})") from None
            names = doc.get("names") if isinstance(doc, dict) else None
            if isinstance(names, dict):
                return [str(names[k]) for k in sorted(names, key=int)]
            if isinstance(names, list):
                return [str(n) for n in names]
            raise UsageError(f"{p}: key 'names' must be a list or an id -> name mapping")
    for p in [root / "classes.txt", *sorted(root.glob("*.names"))]:
        if p.is_file():
            return [ln.strip() for ln in p.read_text(encoding="utf-8").splitlines() if ln.strip()]
    return None


UNKNOWN = ("object",)  # the node of a YOLO box whose class name the folder does not give


def read_yolo(label_path: Path, width: int, height: int, classes: list[str] | tuple[str, ...],
              names: list[str] | None, class_map: dict[str, str] | None = None) -> list[Box]:
    """`class cx cy w h` lines (normalised) -> axis-aligned boxes in pixels. Without class names a box
    is an object of unknown class: scored at detection level only, class-agnostic."""
    boxes: list[Box] = []
    for n, line in enumerate(label_path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 5:
            raise UsageError(f"{label_path}:{n}: expected 'class cx cy w h' (YOLO, normalised); an "
                             "oriented YOLO-OBB line has 9 values and is not read here")
        try:
            cid = int(parts[0])
            cx, cy, w, h = (float(v) for v in parts[1:])
        except ValueError:
            raise UsageError(f"{label_path}:{n}: class id must be an integer and coordinates numbers") from None
        if names is None:
            leaf, path = 0, UNKNOWN
        else:
            if not 0 <= cid < len(names):
                raise UsageError(f"{label_path}:{n}: class id {cid} outside the {len(names)} names given")
            hit = class_node(names[cid], classes, class_map)
            if hit is None:
                continue
            leaf, path = hit
        w, h = w * width, h * height
        # An axis-aligned box is stored as length along x, width along y, heading 0.
        boxes.append(Box(cx * width, cy * height, w, h, 0.0, leaf, path=path, axis_aligned=True))
    return boxes


def load_dataset(root: Path, classes: list[str] | tuple[str, ...], *, class_map: dict[str, str] | None = None,
                 names: list[str] | None = None, gsd: float | None = None) -> list[Sample]:
    """Every labelled image under root: DOTA (images/ + labelTxt/), YOLO (images/ + labels/) or
    GeoTIFF + same-named .geojson. `names`: YOLO class names when the folder has no data.yaml;
    `gsd`: metres per pixel for images whose labels do not say."""
    root = Path(root)
    if not root.is_dir():
        raise UsageError(f"{root}: not a folder (expected images/ + labelTxt/ (DOTA), images/ + labels/ "
                         "(YOLO), or *.tif + *.geojson)")
    samples: list[Sample] = []
    images = ({p.stem: p for p in sorted((root / "images").glob("*")) if p.suffix.lower() in IMAGE_SUFFIXES}
              if (root / "images").is_dir() else {})
    if (root / "labelTxt").is_dir():
        for label in sorted((root / "labelTxt").glob("*.txt")):
            if label.stem not in images:
                continue
            boxes, lgsd = read_dota(label, classes, class_map)
            samples.append(Sample(images[label.stem], boxes, lgsd or gsd))
    elif (root / "labels").is_dir():
        import rasterio

        names = names or yolo_names(root)
        for label in sorted((root / "labels").glob("*.txt")):
            if label.stem not in images:
                continue
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                with rasterio.open(images[label.stem]) as src:
                    w, h = src.width, src.height
            boxes = read_yolo(label, w, h, classes, names, class_map)
            samples.append(Sample(images[label.stem], boxes, gsd, extra={"names_known": names is not None}))
    for tif in sorted(list(root.glob("*.tif")) + list(root.glob("*.tiff"))):
        gj = tif.with_suffix(".geojson")
        if gj.exists():
            samples.append(_geojson_samples(tif, gj, classes))
    if not samples:
        raise UsageError(f"{root}: no labelled images found (expected images/ + labelTxt/ (DOTA), "
                         "images/ + labels/ (YOLO), or *.tif with a same-named *.geojson)")
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


def split_key(image: Path) -> str:
    """Images of one source tile share a key ('MunichStreet02-MOS74' and 'MOS74' -> 'MOS74'), so a
    split by key never puts views of the same ground on both sides."""
    found = re.findall(r"[A-Za-z]+\d+", image.stem)
    return found[-1] if found else image.stem


def holdout_split(samples: list[Sample], *, holdout: float = 0.2, seed: int = 0) -> tuple[list[Sample], list[Sample]]:
    """A deterministic split by source tile: (train, held out)."""
    keys = sorted({split_key(s.image_path) for s in samples})
    rng = np.random.default_rng(seed)
    n_out = max(1, round(holdout * len(keys)))
    held = {keys[i] for i in rng.permutation(len(keys))[:n_out]}
    return ([s for s in samples if split_key(s.image_path) not in held],
            [s for s in samples if split_key(s.image_path) in held])
