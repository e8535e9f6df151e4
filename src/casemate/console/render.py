"""Images for the browser: a PNG rendering of a stored raster, and its detections in image pixels."""

from __future__ import annotations

import io
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from casemate.catalog.models import Version
from casemate.errors import UsageError
from casemate.johnson import LEVELS

MAX_SIDE = 4096  # the rendering's longest side; detections stay in full-resolution pixels
_cache: OrderedDict[str, tuple[bytes, tuple[int, int]]] = OrderedDict()
_lock = threading.Lock()


def can_render(v: Version) -> bool:
    return v.kind == "image"


def _load(path: Path) -> tuple[bytes, tuple[int, int]]:
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = 1 << 31
    try:
        with Image.open(path) as im:
            size = im.size
            if im.mode not in ("RGB", "L"):
                im = _stretch(np.asarray(im)) if im.mode in ("I;16", "I", "F") else im.convert("RGB")
            im.thumbnail((MAX_SIDE, MAX_SIDE))
            buf = io.BytesIO()
            im.save(buf, "PNG", optimize=False, compress_level=3)
            return buf.getvalue(), size
    except Exception as pil_error:  # GeoTIFFs Pillow cannot read: through GDAL, as imagery reads them
        try:
            import rasterio
        except ImportError:
            raise UsageError(f"cannot draw this image: {pil_error}") from None
        with rasterio.open(path) as src:
            size = (src.width, src.height)
            f = max(1, int(np.ceil(max(size) / MAX_SIDE)))
            bands = list(range(1, min(3, src.count) + 1))
            data = src.read(bands, out_shape=(len(bands), size[1] // f, size[0] // f))
        img = _stretch(np.moveaxis(data, 0, -1))
        buf = io.BytesIO()
        img.save(buf, "PNG", compress_level=3)
        return buf.getvalue(), size


def _stretch(a: np.ndarray) -> Any:
    from PIL import Image

    a = a.astype(np.float32)
    lo, hi = np.percentile(a, 2), np.percentile(a, 98)
    a = np.clip((a - lo) / max(hi - lo, 1e-6) * 255.0, 0, 255).astype(np.uint8)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if a.ndim == 3 and a.shape[2] == 2:
        a = a[..., 0]
    return Image.fromarray(a)


def png_of(path: Path, sha256: str) -> tuple[bytes, tuple[int, int]]:
    """(PNG bytes, (width, height) of the original); the caller has read it through the catalog."""
    with _lock:
        hit = _cache.get(sha256)
        if hit is not None:
            _cache.move_to_end(sha256)
            return hit
    out = _load(path)
    with _lock:
        _cache[sha256] = out
        while len(_cache) > 8:
            _cache.popitem(last=False)
    return out


def size_of(path: Path, sha256: str) -> tuple[int, int]:
    with _lock:
        hit = _cache.get(sha256)
    if hit is not None:
        return hit[1]
    try:
        from PIL import Image

        with Image.open(path) as im:
            return im.size
    except Exception:
        return png_of(path, sha256)[1]


def _affine(src: np.ndarray, dst: np.ndarray) -> np.ndarray | None:
    """Least-squares affine map src -> dst (3x2), or None when the points are too few or collinear."""
    if len(src) < 3:
        return None
    a = np.hstack([src, np.ones((len(src), 1))])
    m, _, rank, _ = np.linalg.lstsq(a, dst, rcond=None)
    return m if rank == 3 else None


def pixel_features(doc: dict[str, Any], size: tuple[int, int] | None) -> list[dict[str, Any]]:
    """The GeoJSON's features with polygons in image pixels (x right, y down).

    A georeferenced file (lon/lat) is brought back to pixels through an affine fit of each
    detection's lon/lat centre to its pixel centre: over one image the map is affine to well under a
    pixel, and the fit needs nothing but the file itself.
    """
    feats = [f for f in doc.get("features", []) if isinstance(f, dict)]
    meta = doc.get("casemate") or doc.get("properties") or {}
    coords = str(meta.get("coordinates", "pixel")) if isinstance(meta, dict) else "pixel"
    if coords != "wgs84" and feats and "centre_lonlat" not in (feats[0].get("properties") or {}):
        return feats
    src = np.array([f["properties"]["centre_lonlat"] for f in feats if "centre_lonlat" in f.get("properties", {})],
                   dtype=np.float64)
    dst = np.array([f["properties"]["centre_px"] for f in feats if "centre_lonlat" in f.get("properties", {})],
                   dtype=np.float64)
    m = _affine(src, dst)
    if m is None:
        return feats
    out = []
    for f in feats:
        ring = np.asarray(f["geometry"]["coordinates"][0], dtype=np.float64)
        px = np.hstack([ring, np.ones((len(ring), 1))]) @ m
        out.append({**f, "geometry": {"type": "Polygon", "coordinates": [np.round(px, 2).tolist()]}})
    return out


def compact(feats: list[dict[str, Any]]) -> dict[str, Any]:
    """Flat arrays for the map: rings (4 corners), class and level indices, scores."""
    classes: dict[str, int] = {}
    rings: list[float] = []
    cls: list[int] = []
    lvl: list[int] = []
    score: list[float] = []
    levels = [str(x) for x in LEVELS]
    for f in feats:
        p = f.get("properties") or {}
        ring = f["geometry"]["coordinates"][0][:4]
        if len(ring) < 4:
            continue
        for x, y in ring:
            rings.append(round(float(x), 1))
            rings.append(round(float(y), 1))
        c = str(p.get("label", "?"))
        cls.append(classes.setdefault(c, len(classes)))
        d = p.get("dri_level")
        lvl.append(levels.index(d) if d in levels else -1)
        score.append(round(float(p.get("score") or 0.0), 3))
    return {"classes": list(classes), "levels": levels, "rings": rings, "cls": cls, "lvl": lvl, "score": score}


_layers: OrderedDict[tuple[str, tuple[int, int] | None], tuple[list[dict[str, Any]], dict[str, Any]]] = OrderedDict()


def layer_of(path: Path, sha256: str, size: tuple[int, int] | None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(pixel features, compact arrays) of a stored detections file, cached by content (the caller
    has read it through the catalog: the cache never decides who may see it)."""
    import json

    key = (sha256, size)
    with _lock:
        hit = _layers.get(key)
        if hit is not None:
            _layers.move_to_end(key)
            return hit
    try:
        doc = json.loads(path.read_bytes())
    except ValueError as exc:
        raise UsageError(f"this detections file is not valid GeoJSON ({exc})") from None
    feats = pixel_features(doc, size)
    out = (feats, compact(feats))
    with _lock:
        _layers[key] = out
        while len(_layers) > 4:
            _layers.popitem(last=False)
    return out


def _fit_of(doc: dict[str, Any]) -> np.ndarray | None:
    """The lon/lat -> pixel affine of a georeferenced detections document (None: cannot be fitted)."""
    pairs = [((f.get("properties") or {}).get("centre_lonlat"), (f.get("properties") or {}).get("centre_px"))
             for f in doc.get("features", []) if isinstance(f, dict)]
    pairs = [(s, d) for s, d in pairs if s and d]
    if len(pairs) < 3:
        return None
    return _affine(np.array([s for s, _ in pairs], dtype=np.float64), np.array([d for _, d in pairs], dtype=np.float64))


def change_layer(path: Path, sha256: str, after_path: Path, after_sha: str,
                 size: tuple[int, int] | None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """A stored change (lon/lat) in the later image's pixels, through the lon/lat -> pixel fit of that
    image's detections; each feature's class is "CHANGE class" (appeared vehicle, moved ship...)."""
    import json

    key = (sha256 + ":" + after_sha, size)
    with _lock:
        hit = _layers.get(key)
        if hit is not None:
            return hit
    try:
        doc = json.loads(path.read_bytes())
        after = json.loads(after_path.read_bytes())
    except ValueError as exc:
        raise UsageError(f"this change file is not valid GeoJSON ({exc})") from None
    m = _fit_of(after)
    if m is None:
        raise UsageError("the later date's detections cannot place this change on its image "
                         "(fewer than 3 georeferenced detections)")
    feats = []
    for f in doc.get("features", []):
        p = f.get("properties") or {}
        ring = np.asarray(f["geometry"]["coordinates"][0], dtype=np.float64)
        px = np.hstack([ring, np.ones((len(ring), 1))]) @ m
        feats.append({"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [np.round(px, 2).tolist()]},
                      "properties": {**p, "label": f"{p.get('change', '?')} {p.get('class', '?')}"}})
    out = (feats, compact(feats))
    with _lock:
        _layers[key] = out  # type: ignore[index]
        while len(_layers) > 4:
            _layers.popitem(last=False)
    return out
