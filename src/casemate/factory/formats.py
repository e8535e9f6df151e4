"""Annotation layouts as their tools write them: YOLO, YOLO-OBB, DOTA, COCO.

Readers turn a folder into `LabelledImage`s in one canonical form (pixels, class names); writers
turn them back. Nothing here touches the catalog. Every problem is collected as a `Problem`
(file, line, what to do) instead of stopping at the first, so one run reports them all.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FORMATS = ("yolo", "yolo-obb", "dota", "coco")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")
# Coordinates are kept to a thousandth of a pixel: a normalised value written with 8 decimals
# reads back to the same pixel value, so import -> export -> import is exact.
PX_DECIMALS = 3
IO_THREADS = 4
# Objects cut by the image edge are common in real labels: a box whose centre is inside is kept
# (an axis-aligned one clipped to the image, as Ultralytics does); one whose centre is outside is
# an error.


@dataclass(frozen=True)
class Problem:
    path: str
    line: int | None
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}" if self.line else f"{self.path}: {self.message}"


@dataclass
class LabelledImage:
    """One image and its objects. An object: {"class": name, "bbox": [x, y, w, h]} (axis-aligned)
    or {"class": name, "poly": [x1, y1, ..., x4, y4]} (oriented), in pixels; "difficult" optional."""

    image_path: Path
    rel_name: str  # path under the images folder, e.g. "train/MOS155.png"
    width: int
    height: int
    objects: list[dict[str, Any]]
    label_path: Path | None = None
    gsd: float | None = None

    def canonical(self, image_sha256: str) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "format": "casemate-annotation/1",
            "image_sha256": image_sha256,
            "width": self.width,
            "height": self.height,
            "objects": self.objects,
        }
        if self.gsd is not None:
            doc["gsd_m"] = self.gsd
        return doc


@dataclass
class ReadResult:
    images: list[LabelledImage] = field(default_factory=list)
    classes: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


def image_size(path: Path) -> tuple[int, int]:
    """Width and height from the file header only (PIL decodes nothing until asked)."""
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = None  # satellite scenes are large on purpose
    with Image.open(path) as im:
        return int(im.width), int(im.height)


def _r(v: float) -> float:
    return round(float(v), PX_DECIMALS) + 0.0  # + 0.0: no "-0.0" in canonical JSON


def _images_under(folder: Path) -> dict[str, Path]:
    """Relative path without suffix -> image file, for every image under folder (recursive)."""
    out: dict[str, Path] = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        for fn in sorted(filenames):
            if fn.lower().endswith(IMAGE_SUFFIXES):
                p = Path(dirpath) / fn
                out[str(p.relative_to(folder).with_suffix(""))] = p
    return out


def _labels_under(folder: Path, suffix: str = ".txt") -> dict[str, Path]:
    out: dict[str, Path] = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        for fn in sorted(filenames):
            if fn.endswith(suffix) and fn != "classes.txt":
                p = Path(dirpath) / fn
                out[str(p.relative_to(folder).with_suffix(""))] = p
    return out


def read_class_names(root: Path) -> tuple[list[str] | None, Problem | None]:
    """Class names as Ultralytics (data.yaml) or darknet (classes.txt, *.names) write them."""
    import yaml

    for name in ("data.yaml", "dataset.yaml", "data.yml"):
        p = root / name
        if p.is_file():
            try:
                doc = yaml.safe_load(p.read_text(encoding="utf-8"))
            except (OSError, yaml.YAMLError, UnicodeDecodeError) as exc:
                return None, Problem(str(p), None, f"not valid UTF-8 YAML ({exc}): fix the file")
            names = doc.get("names") if isinstance(doc, dict) else None
            if isinstance(names, dict):
                try:
                    ids = sorted(int(k) for k in names)
                except (TypeError, ValueError):
                    return None, Problem(str(p), None, "'names' keys must be class ids (0, 1, ...)")
                full = [str(names.get(i, names.get(str(i), f"class{i}"))) for i in range(ids[-1] + 1)] if ids else []
                return full, None
            if isinstance(names, list) and names:
                return [str(n) for n in names], None
            return None, Problem(str(p), None, "no 'names' list or mapping: add the class names")
    candidates = [root / "classes.txt", root / "labels" / "classes.txt", *sorted(root.glob("*.names"))]
    for p in candidates:
        if p.is_file():
            names = [ln.strip() for ln in p.read_text(encoding="utf-8").splitlines() if ln.strip()]
            if names:
                return names, None
    return None, None


def _pair(images: dict[str, Path], labels: dict[str, Path], res: ReadResult, img_root: Path,
          label_root: Path) -> list[tuple[str, Path, Path]]:
    pairs = []
    for key, img in images.items():
        lab = labels.get(key)
        if lab is None:
            res.problems.append(Problem(str(img), None, f"image without labels: expected {label_root / key}.txt "
                                        "(an empty file marks an image with no objects)"))
        else:
            pairs.append((str(img.relative_to(img_root)), img, lab))
    for key, lab in labels.items():
        if key not in images:
            res.problems.append(Problem(str(lab), None, f"labels without an image: no {img_root / key}.* "
                                        "(remove the file or add its image)"))
    return pairs


def _check_inside(xs: Iterable[float], ys: Iterable[float], w: int, h: int) -> bool:
    xs, ys = list(xs), list(ys)
    cx, cy = sum(xs) / len(xs), sum(ys) / len(ys)
    return 0 <= cx <= w and 0 <= cy <= h


def _clip_bbox(x0: float, y0: float, bw: float, bh: float, w: int, h: int) -> list[float]:
    x1, y1 = min(x0 + bw, w), min(y0 + bh, h)
    x0, y0 = max(x0, 0.0), max(y0, 0.0)
    return [_r(x0), _r(y0), _r(x1 - x0), _r(y1 - y0)]


def _size_or_problem(img: Path, res: ReadResult, known: dict[Path, Any] | None = None) -> tuple[int, int] | None:
    got = known.get(img) if known is not None else None
    if got is None:
        got = _try_size(img)
    if isinstance(got, tuple):
        return got
    res.problems.append(Problem(str(img), None, f"not a readable image ({got}): replace the file"))
    return None


def _try_size(img: Path) -> tuple[int, int] | str:
    try:
        return image_size(img)
    except Exception as exc:  # PIL raises many kinds for a damaged file
        return type(exc).__name__


def _prefetch(paths: list[Path], labels: list[Path] | None = None) -> tuple[dict[Path, Any], dict[Path, str]]:
    """Image sizes and label texts read from a few threads: small-file reads are latency-bound."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(IO_THREADS) as pool:
        sizes = dict(zip(paths, pool.map(_try_size, paths), strict=True))
        texts = dict(zip(labels, pool.map(lambda p: p.read_text(encoding="utf-8", errors="replace"), labels),
                         strict=True)) if labels else {}
    return sizes, texts


def read_yolo(root: Path, *, obb: bool = False, classes: list[str] | None = None) -> ReadResult:
    res = ReadResult()
    img_root, label_root = root / "images", root / "labels"
    if not img_root.is_dir() or not label_root.is_dir():
        res.problems.append(Problem(str(root), None, "expected the YOLO layout images/ + labels/"))
        return res
    if classes is None:
        classes, problem = read_class_names(root)
        if problem:
            res.problems.append(problem)
            return res
        if classes is None:
            res.problems.append(Problem(str(root), None, "no class names: add data.yaml (names: [...]) or "
                                        "classes.txt, or pass --classes a,b,c"))
            return res
    res.classes = list(classes)
    want = 9 if obb else 5
    shape = "class x1 y1 x2 y2 x3 y3 x4 y4" if obb else "class cx cy w h"
    pairs = _pair(_images_under(img_root), _labels_under(label_root), res, img_root, label_root)
    sizes, texts = _prefetch([p[1] for p in pairs], [p[2] for p in pairs])
    for rel, img, lab in pairs:
        size = _size_or_problem(img, res, sizes)
        if size is None:
            continue
        w, h = size
        objects = []
        for n, line in enumerate(texts[lab].splitlines(), 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != want:
                res.problems.append(Problem(str(lab), n, f"expected {want} values '{shape}' (normalised), got {len(parts)}"))
                continue
            try:
                cid = int(parts[0])
                vals = [float(v) for v in parts[1:]]
            except ValueError:
                res.problems.append(Problem(str(lab), n, "values must be numbers (an integer class id first)"))
                continue
            if not 0 <= cid < len(classes):
                res.problems.append(Problem(str(lab), n, f"unknown class id {cid}: the class names list has "
                                            f"{len(classes)} entries (0..{len(classes) - 1})"))
                continue
            if obb:
                poly = [_r(v * (w if i % 2 == 0 else h)) for i, v in enumerate(vals)]
                if not _check_inside(poly[0::2], poly[1::2], w, h):
                    res.problems.append(Problem(str(lab), n, f"box outside the {w}x{h} image"))
                    continue
                objects.append({"class": classes[cid], "poly": poly})
            else:
                cx, cy, bw, bh = vals[0] * w, vals[1] * h, vals[2] * w, vals[3] * h
                if bw <= 0 or bh <= 0:
                    res.problems.append(Problem(str(lab), n, "box width and height must be positive"))
                    continue
                x0, y0 = cx - bw / 2, cy - bh / 2
                if not _check_inside((x0, x0 + bw), (y0, y0 + bh), w, h):
                    res.problems.append(Problem(str(lab), n, f"box outside the {w}x{h} image"))
                    continue
                objects.append({"class": classes[cid], "bbox": _clip_bbox(x0, y0, bw, bh, w, h)})
        res.images.append(LabelledImage(img, rel, w, h, objects, lab))
    return res


def read_dota(root: Path, *, classes: list[str] | None = None) -> ReadResult:
    """DOTA: images/ + labelTxt/, `x1 y1 ... x4 y4 class difficult` in pixels, optional
    `imagesource:` and `gsd:` header lines. Class names come from the files (or `classes`)."""
    res = ReadResult()
    img_root, label_root = root / "images", root / "labelTxt"
    if not img_root.is_dir() or not label_root.is_dir():
        res.problems.append(Problem(str(root), None, "expected the DOTA layout images/ + labelTxt/"))
        return res
    seen: dict[str, None] = {}
    pairs = _pair(_images_under(img_root), _labels_under(label_root), res, img_root, label_root)
    sizes, texts = _prefetch([p[1] for p in pairs], [p[2] for p in pairs])
    for rel, img, lab in pairs:
        size = _size_or_problem(img, res, sizes)
        if size is None:
            continue
        w, h = size
        objects = []
        gsd = None
        for n, line in enumerate(texts[lab].splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("imagesource:"):
                continue
            if line.startswith("gsd:"):
                try:
                    gsd = float(line[4:]) if line[4:].strip() not in ("", "null", "None") else None
                except ValueError:
                    res.problems.append(Problem(str(lab), n, "gsd: must be a number of metres per pixel"))
                continue
            parts = line.split()
            if len(parts) not in (9, 10):
                res.problems.append(Problem(str(lab), n, "expected 'x1 y1 x2 y2 x3 y3 x4 y4 class [difficult]'"))
                continue
            try:
                poly = [_r(float(v)) for v in parts[:8]]
            except ValueError:
                res.problems.append(Problem(str(lab), n, "corner coordinates must be numbers"))
                continue
            name = parts[8]
            if classes is not None and name not in classes:
                res.problems.append(Problem(str(lab), n, f"unknown class {name!r} (known: {', '.join(classes)})"))
                continue
            if not _check_inside(poly[0::2], poly[1::2], w, h):
                res.problems.append(Problem(str(lab), n, f"box outside the {w}x{h} image"))
                continue
            obj: dict[str, Any] = {"class": name, "poly": poly}
            if len(parts) == 10 and parts[9] == "1":
                obj["difficult"] = True
            objects.append(obj)
            seen.setdefault(name)
        res.images.append(LabelledImage(img, rel, w, h, objects, lab, gsd))
    res.classes = list(classes) if classes is not None else sorted(seen)
    return res


def read_coco(root: Path, *, classes: list[str] | None = None) -> ReadResult:
    """COCO: one JSON (root itself, or the single *.json in root or root/annotations); images
    under root/images/ or beside the JSON, by `file_name`."""
    res = ReadResult()
    if root.is_file():
        js = [root]
        root = root.parent
    else:
        js = sorted(root.glob("*.json")) or sorted((root / "annotations").glob("*.json"))
    if len(js) != 1:
        res.problems.append(Problem(str(root), None, f"expected exactly one COCO JSON file, found {len(js)}: "
                                    "give the file itself"))
        return res
    jpath = js[0]
    try:
        doc = json.loads(jpath.read_text(encoding="utf-8"))
        cats = {int(c["id"]): str(c["name"]) for c in doc["categories"]}
        imgs = {int(i["id"]): i for i in doc["images"]}
        anns = doc.get("annotations", [])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        res.problems.append(Problem(str(jpath), None, f"not a COCO file ({type(exc).__name__}: {exc}): needs "
                                    "'images', 'categories' and 'annotations'"))
        return res
    res.classes = list(classes) if classes is not None else [cats[k] for k in sorted(cats)]
    by_image: dict[int, list[dict[str, Any]]] = {k: [] for k in imgs}
    for n, a in enumerate(anns, 1):
        where = f"annotations[{n - 1}]"
        try:
            iid, cid = int(a["image_id"]), int(a["category_id"])
            x, y, bw, bh = (float(v) for v in a["bbox"])
        except (KeyError, TypeError, ValueError):
            res.problems.append(Problem(str(jpath), None, f"{where}: needs image_id, category_id and bbox [x, y, w, h]"))
            continue
        if iid not in imgs:
            res.problems.append(Problem(str(jpath), None, f"{where}: image_id {iid} is not in 'images'"))
            continue
        if cid not in cats or cats[cid] not in res.classes:
            res.problems.append(Problem(str(jpath), None, f"{where}: unknown category_id {cid}"))
            continue
        if bw <= 0 or bh <= 0:
            res.problems.append(Problem(str(jpath), None, f"{where}: bbox width and height must be positive"))
            continue
        info = imgs[iid]
        w, h = int(info.get("width") or 0), int(info.get("height") or 0)
        if w and h and not _check_inside((x, x + bw), (y, y + bh), w, h):
            res.problems.append(Problem(str(jpath), None, f"{where}: box outside the {w}x{h} image"))
            continue
        obj: dict[str, Any] = {"class": cats[cid], "bbox": _clip_bbox(x, y, bw, bh, w, h) if w and h
                               else [_r(x), _r(y), _r(bw), _r(bh)]}
        seg = a.get("segmentation")
        if isinstance(seg, list) and len(seg) == 1 and isinstance(seg[0], list) and len(seg[0]) == 8:
            obj = {"class": cats[cid], "poly": [_r(float(v)) for v in seg[0]]}
        by_image[iid].append(obj)
    img_dirs = [root / "images", root, jpath.parent / "images", jpath.parent]
    for iid, info in imgs.items():
        fname = str(info.get("file_name", ""))
        path = next((d / fname for d in img_dirs if fname and (d / fname).is_file()), None)
        if path is None:
            res.problems.append(Problem(str(jpath), None, f"images id {iid}: file {fname!r} not found under "
                                        f"{root / 'images'} or {root}"))
            continue
        size = _size_or_problem(path, res)
        if size is None:
            continue
        res.images.append(LabelledImage(path, fname, size[0], size[1], by_image[iid], jpath))
    return res


def read_folder(root: Path, fmt: str, *, classes: list[str] | None = None) -> ReadResult:
    if fmt not in FORMATS:
        from casemate.errors import UsageError

        raise UsageError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")
    root = Path(root)
    if not root.exists():
        return ReadResult(problems=[Problem(str(root), None, "no such folder")])
    if fmt == "coco":
        return read_coco(root, classes=classes)
    if fmt == "dota":
        return read_dota(root, classes=classes)
    return read_yolo(root, obb=fmt == "yolo-obb", classes=classes)


# -- writers ------------------------------------------------------------------------------------
def envelope(obj: dict[str, Any]) -> list[float]:
    """[x, y, w, h] of an object (the axis-aligned envelope of an oriented box)."""
    if "bbox" in obj:
        return list(obj["bbox"])
    xs, ys = obj["poly"][0::2], obj["poly"][1::2]
    return [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]


def corners(obj: dict[str, Any]) -> list[float]:
    if "poly" in obj:
        return list(obj["poly"])
    x, y, w, h = obj["bbox"]
    return [x, y, x + w, y, x + w, y + h, x, y + h]


def _n(v: float) -> str:
    return f"{v:.8f}".rstrip("0").rstrip(".") if v else "0"


def yolo_lines(doc: dict[str, Any], classes: list[str], *, obb: bool) -> str:
    w, h = doc["width"], doc["height"]
    lines = []
    for o in doc["objects"]:
        cid = classes.index(o["class"])
        if obb:
            pts = corners(o)
            lines.append(" ".join([str(cid), *(_n(v / (w if i % 2 == 0 else h)) for i, v in enumerate(pts))]))
        else:
            x, y, bw, bh = envelope(o)
            lines.append(f"{cid} {_n((x + bw / 2) / w)} {_n((y + bh / 2) / h)} {_n(bw / w)} {_n(bh / h)}")
    return "".join(ln + "\n" for ln in lines)


def dota_lines(doc: dict[str, Any]) -> str:
    out = []
    if doc.get("gsd_m") is not None:
        out.append(f"gsd:{doc['gsd_m']}")
    for o in doc["objects"]:
        pts = " ".join(_n(v) for v in corners(o))
        out.append(f"{pts} {o['class'].replace(' ', '-')} {1 if o.get('difficult') else 0}")
    return "".join(ln + "\n" for ln in out)


def coco_document(items: list[tuple[str, dict[str, Any]]], classes: list[str]) -> dict[str, Any]:
    images, anns = [], []
    for iid, (fname, doc) in enumerate(items, 1):
        images.append({"id": iid, "file_name": fname, "width": doc["width"], "height": doc["height"]})
        for o in doc["objects"]:
            x, y, bw, bh = envelope(o)
            a: dict[str, Any] = {"id": len(anns) + 1, "image_id": iid, "category_id": classes.index(o["class"]) + 1,
                                 "bbox": [x, y, bw, bh], "area": bw * bh, "iscrowd": 0}
            if "poly" in o:
                a["segmentation"] = [list(o["poly"])]
            anns.append(a)
    cats = [{"id": i + 1, "name": c} for i, c in enumerate(classes)]
    return {"images": images, "annotations": anns, "categories": cats}
