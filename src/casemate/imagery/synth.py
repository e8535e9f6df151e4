"""Procedural training scenes with oriented labels, so training and tests need no downloaded data.

Vehicles with shadows on roads and fields, ships with wakes on water, aircraft on aprons; the
ground sample distance (GSD), textures, sun and lighting vary per scene. Everything is drawn as
anti-aliased convex polygons in numpy; labels are written in DOTA format with a `gsd:` header.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from casemate.fileutil import atomic_path, write_atomic
from casemate.imagery.dri import DEFAULT_CLASSES


@dataclass
class SynthObject:
    cls: str  # leaf class path
    cx: float  # centre, px
    cy: float
    length: float  # px, along the heading
    width: float  # px
    heading: float  # radians, image frame (x right, y down), direction of the front

    def corners(self) -> np.ndarray:
        return box_corners(self.cx, self.cy, self.length, self.width, self.heading)


@dataclass
class Scene:
    image: np.ndarray  # HxWx3 uint8
    gsd: float  # metres per pixel
    objects: list[SynthObject]


def box_corners(cx: float, cy: float, length: float, width: float, angle: float) -> np.ndarray:
    """4x2 corners of an oriented box (front-left, front-right, rear-right, rear-left)."""
    c, s = math.cos(angle), math.sin(angle)
    local = np.array([[length / 2, -width / 2], [length / 2, width / 2],
                      [-length / 2, width / 2], [-length / 2, -width / 2]])
    rot = np.array([[c, -s], [s, c]])
    return local @ rot.T + np.array([cx, cy])


# --- drawing -------------------------------------------------------------------------------

_SUB = np.array([[0.25, 0.25], [0.75, 0.25], [0.25, 0.75], [0.75, 0.75]])


def fill_convex(img: np.ndarray, poly: np.ndarray, color, alpha: float = 1.0) -> None:
    """Blend a convex polygon (Nx2 px, any winding) into img, anti-aliased by 4 sub-samples."""
    h, w = img.shape[:2]
    x0, y0 = np.floor(poly.min(axis=0)).astype(int)
    x1, y1 = np.ceil(poly.max(axis=0)).astype(int)
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1 + 1, w), min(y1 + 1, h)
    if x0 >= x1 or y0 >= y1:
        return
    ys, xs = np.mgrid[y0:y1, x0:x1]
    area = 0.0
    n = len(poly)
    for i in range(n):
        area += poly[i][0] * poly[(i + 1) % n][1] - poly[(i + 1) % n][0] * poly[i][1]
    sign = 1.0 if area >= 0 else -1.0
    cover = np.zeros(xs.shape, dtype=np.float32)
    for ox, oy in _SUB:
        px, py = xs + ox, ys + oy
        inside = np.ones(xs.shape, dtype=bool)
        for i in range(n):
            ax, ay = poly[i]
            bx, by = poly[(i + 1) % n]
            inside &= sign * ((bx - ax) * (py - ay) - (by - ay) * (px - ax)) >= 0
        cover += inside
    a = (cover / 4.0 * alpha)[..., None]
    region = img[y0:y1, x0:x1]
    region[...] = region * (1 - a) + np.asarray(color, dtype=np.float32) * a


def _noise(rng: np.random.Generator, h: int, w: int, cell: int) -> np.ndarray:
    """Smooth value noise in [-1, 1]."""
    gh, gw = h // cell + 2, w // cell + 2
    grid = rng.uniform(-1, 1, (gh, gw)).astype(np.float32)
    up = ndimage.zoom(grid, cell, order=1)
    return up[:h, :w]


def _to_px(local: list[tuple[float, float]], obj_m: tuple[float, float, float], gsd: float,
           shift: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """Object-local metres (x forward, y to the right) -> image pixels."""
    cx, cy, ang = obj_m
    c, s = math.cos(ang), math.sin(ang)
    pts = np.asarray(local, dtype=np.float64) / gsd
    out = np.empty_like(pts)
    out[:, 0] = cx + pts[:, 0] * c - pts[:, 1] * s + shift[0]
    out[:, 1] = cy + pts[:, 0] * s + pts[:, 1] * c + shift[1]
    return out


def _rect(x0: float, x1: float, y0: float, y1: float) -> list[tuple[float, float]]:
    return [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]


def _model(cls: str, rng: np.random.Generator) -> tuple[float, float, float, list]:
    """(length m, width m, height m, [(convex polygon in metres, rgb)]) for a leaf class."""
    leaf = cls.rsplit("/", 1)[-1]
    u = rng.uniform
    paint = [(200, 30, 30), (30, 60, 160), (230, 230, 230), (25, 25, 25), (120, 120, 125),
             (200, 180, 40), (40, 110, 60), (150, 150, 160)]
    col = paint[rng.integers(len(paint))]
    if leaf == "sedan":
        L, W = u(4.2, 4.9), u(1.7, 1.9)
        parts = [(_rect(-L / 2, L / 2, -W / 2, W / 2), col),
                 (_rect(0.05 * L, 0.22 * L, -W / 2 + 0.15, W / 2 - 0.15), (40, 50, 60)),
                 (_rect(-0.38 * L, -0.28 * L, -W / 2 + 0.2, W / 2 - 0.2), (40, 50, 60))]
        return L, W, 1.5, parts
    if leaf in ("box_truck", "tanker"):
        L, W = (u(7, 10), u(2.3, 2.6)) if leaf == "box_truck" else (u(10, 13), u(2.4, 2.6))
        parts = [(_rect(L / 2 - 2.2, L / 2, -W / 2, W / 2), col)]
        if leaf == "box_truck":
            box = tuple(int(v) for v in rng.integers(200, 250, 3))
            parts.append((_rect(-L / 2, L / 2 - 2.5, -W / 2, W / 2), box))
            parts.append((_rect(-L / 2, L / 2 - 2.5, -W / 2, -W / 2 + 0.15), (150, 150, 150)))
        else:
            parts.append((_rect(-L / 2, L / 2 - 2.6, -W / 2, W / 2), (110, 115, 120)))
            parts.append((_rect(-L / 2 + 0.2, L / 2 - 2.8, -W / 4, W / 4), (190, 195, 200)))
            parts.append((_rect(-L / 2 + 0.3, L / 2 - 2.9, -W / 12, W / 12), (245, 245, 250)))
        return L, W, 3.2, parts
    if leaf == "motorboat":
        L = u(6, 14)
        W = L * u(0.28, 0.35)
        hull = [(-L / 2, -W / 2), (L / 4, -W / 2), (L / 2, 0), (L / 4, W / 2), (-L / 2, W / 2)]
        parts = [(hull, (235, 235, 235)), (_rect(-0.1 * L, 0.1 * L, -W / 4, W / 4), (90, 100, 110))]
        return L, W, 1.5, parts
    if leaf == "container_ship":
        L = u(50, 90)
        W = L * u(0.13, 0.16)
        hull_col = [(120, 30, 30), (40, 40, 45), (60, 70, 90)][rng.integers(3)]
        hull = [(-L / 2, -W / 2), (0.38 * L, -W / 2), (L / 2, 0), (0.38 * L, W / 2), (-L / 2, W / 2)]
        parts = [(hull, hull_col)]
        n = int(rng.integers(5, 9))
        bay = (0.7 * L) / n
        for i in range(n):
            x0 = -0.3 * L + i * bay
            for j in range(2):
                c = paint[rng.integers(len(paint))]
                y0 = -W / 2 + 0.12 * W + j * 0.38 * W
                parts.append((_rect(x0 + 0.3, x0 + bay - 0.3, y0, y0 + 0.36 * W), c))
        parts.append((_rect(-L / 2 + 0.02 * L, -0.34 * L, -W / 2 + 1, W / 2 - 1), (245, 245, 245)))
        return L, W, 12.0, parts
    if leaf == "narrowbody":
        L = u(30, 40)
        span = L * u(0.9, 1.05)
        f = 1.9
        body = (240, 240, 242)
        parts = [
            ([(-L / 2, -f), (L / 2 - 2, -f), (L / 2, 0), (L / 2 - 2, f), (-L / 2, f)], body),
            ([(3, -f), (-3, -f), (-0.3 * L, -span / 2), (-0.3 * L + 2, -span / 2)], (210, 212, 215)),
            ([(3, f), (-3, f), (-0.3 * L, span / 2), (-0.3 * L + 2, span / 2)], (210, 212, 215)),
            ([(-L / 2 + 4, -f), (-L / 2 + 1, -f), (-L / 2, -0.17 * span), (-L / 2 + 1.5, -0.17 * span)],
             (200, 200, 205)),
            ([(-L / 2 + 4, f), (-L / 2 + 1, f), (-L / 2, 0.17 * span), (-L / 2 + 1.5, 0.17 * span)],
             (200, 200, 205)),
        ]
        return L, span, 4.0, parts
    if leaf == "delta_fighter":
        L = u(15, 19)
        span = L * u(0.55, 0.65)
        grey = (100 + int(rng.integers(0, 40)),) * 3
        parts = [
            ([(0.15 * L, -0.6), (-0.45 * L, -span / 2), (-0.48 * L, -0.6)], grey),
            ([(0.15 * L, 0.6), (-0.45 * L, span / 2), (-0.48 * L, 0.6)], grey),
            ([(-L / 2, -0.8), (0.4 * L, -0.8), (L / 2, 0), (0.4 * L, 0.8), (-L / 2, 0.8)],
             tuple(v - 20 for v in grey)),
            (_rect(0.15 * L, 0.3 * L, -0.4, 0.4), (30, 40, 60)),
        ]
        return L, span, 2.5, parts
    raise ValueError(f"synth: no drawing for class {cls!r}")


def generate_scene(rng: np.random.Generator, size: int = 256, gsd: float | None = None,
                   density: float = 1.0, classes: tuple[str, ...] = DEFAULT_CLASSES) -> Scene:
    """One scene: terrain, surfaces (water, apron, roads) and objects placed on the right surface."""
    h = w = int(size)
    gsd = float(gsd if gsd is not None else rng.uniform(0.3, 1.0))
    img = np.empty((h, w, 3), dtype=np.float32)
    field = np.array([rng.uniform(60, 140), rng.uniform(80, 150), rng.uniform(40, 100)])
    n1, n2 = _noise(rng, h, w, 32), _noise(rng, h, w, 6)
    img[...] = field + (n1 * 25 + n2 * 10)[..., None]
    surface = np.zeros((h, w), dtype=np.uint8)  # 0 field, 1 water, 2 apron, 3 road
    ys, xs = np.mgrid[0:h, 0:w]
    kinds = [k for k, prefix in (("harbour", "ship/"), ("airfield", "aircraft/"), ("roads", "vehicle/"))
             if any(c.startswith(prefix) for c in classes)]
    kind = rng.choice(kinds + ["mixed"]) if kinds else "mixed"
    if kind in ("harbour", "mixed"):
        ang = rng.uniform(0, 2 * math.pi)
        d = (xs - w / 2) * math.cos(ang) + (ys - h / 2) * math.sin(ang)
        water = d > rng.uniform(-0.4, 0.1) * size
        wc = np.array([rng.uniform(10, 50), rng.uniform(40, 80), rng.uniform(60, 110)])
        img[water] = wc + (n2[water] * 4)[..., None]
        surface[water] = 1
    if kind in ("airfield", "mixed"):
        cx, cy = rng.uniform(0.3, 0.7) * w, rng.uniform(0.3, 0.7) * h
        aw, ah = rng.uniform(0.4, 0.9) * w, rng.uniform(0.4, 0.9) * h
        ang = rng.uniform(0, math.pi)
        poly = box_corners(cx, cy, aw, ah, ang)
        cand = img.copy()
        g = rng.uniform(140, 200)
        fill_convex(cand, poly, (g, g, g - 5))
        changed = (np.abs(cand - img).sum(axis=2) > 1) & (surface != 1)
        img[changed] = cand[changed] + (n2[changed] * 6)[..., None]
        surface[changed] = 2
    roads: list[float] = []
    if kind in ("roads", "mixed") or rng.random() < 0.3:
        for _ in range(int(rng.integers(1, 4))):
            ang = rng.uniform(0, math.pi)
            rw = rng.uniform(7, 14) / gsd
            cx, cy = rng.uniform(0.2, 0.8) * w, rng.uniform(0.2, 0.8) * h
            poly = box_corners(cx, cy, 3 * size, rw, ang)
            cand = img.copy()
            g = rng.uniform(50, 95)
            fill_convex(cand, poly, (g, g, g + 3))
            changed = (np.abs(cand - img).sum(axis=2) > 1) & (surface != 1)
            img[changed] = cand[changed]
            surface[changed] = 3
            roads.append(ang)
    sun = rng.uniform(0, 2 * math.pi)
    sun_k = rng.uniform(0.3, 1.2)  # shadow length per metre of height
    objects: list[SynthObject] = []
    placed: list[tuple[float, float, float]] = []
    want = int(rng.integers(3, 10) * density * (size / 256) ** 2)
    by_surface = {1: [c for c in classes if c.startswith("ship/")],
                  2: [c for c in classes if c.startswith("aircraft/")],
                  3: [c for c in classes if c.startswith("vehicle/")],
                  0: [c for c in classes if c.startswith("vehicle/")]}
    present = [s for s in (1, 2, 3, 0) if (surface == s).any() and by_surface[s]]
    tries = 0
    while len(objects) < want and tries < want * 30 and present:
        tries += 1
        s = present[int(rng.integers(len(present)))]
        cls = by_surface[s][int(rng.integers(len(by_surface[s])))]
        L, W, H, parts = _model(cls, rng)
        lpx, wpx = L / gsd, W / gsd
        if lpx > 0.6 * size:
            continue
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        r = 0.5 * math.hypot(lpx, wpx)
        if cx - r < 1 or cy - r < 1 or cx + r > w - 1 or cy + r > h - 1:
            continue
        if surface[int(cy), int(cx)] != s:
            continue
        if any(math.hypot(cx - px, cy - py) < (r + pr) * 1.02 for px, py, pr in placed):
            continue
        if s == 3 and roads:
            heading = roads[int(rng.integers(len(roads)))] + rng.choice([0, math.pi]) + rng.normal(0, 0.05)
        else:
            heading = rng.uniform(0, 2 * math.pi)
        pose = (cx, cy, heading)
        if s == 1:  # wake: a widening foam trail behind the stern
            wl = L * rng.uniform(1, 2.5)
            wake = [(-L / 2, -W / 3), (-L / 2, W / 3), (-L / 2 - wl, W * 1.5), (-L / 2 - wl, -W * 1.5)]
            fill_convex(img, _to_px(wake, pose, gsd), (220, 230, 235), alpha=0.35)
        else:  # cast shadow
            sh = (math.cos(sun) * H * sun_k / gsd, math.sin(sun) * H * sun_k / gsd)
            for poly, _c in parts:
                p = _to_px(poly, pose, gsd, sh)
                fill_convex(img, p, (15, 15, 20), alpha=0.55)
        for poly, c in parts:
            fill_convex(img, _to_px(poly, pose, gsd), c)
        placed.append((cx, cy, r))
        objects.append(SynthObject(cls, cx, cy, lpx, wpx, heading % (2 * math.pi)))
    gain = rng.uniform(0.7, 1.25)
    img = img * gain + rng.uniform(-15, 15)
    if rng.random() < 0.5:
        img = ndimage.uniform_filter(img, size=(2, 2, 1))
    img += rng.normal(0, rng.uniform(1, 6), img.shape)
    return Scene(np.clip(img, 0, 255).astype(np.uint8), gsd, objects)


# --- DOTA files ----------------------------------------------------------------------------

def dota_text(scene: Scene) -> str:
    lines = ["imagesource:casemate-synth", f"gsd:{scene.gsd:.4f}"]
    for o in scene.objects:
        pts = " ".join(f"{v:.1f}" for v in o.corners().ravel())
        lines.append(f"{pts} {o.cls} 0")
    return "\n".join(lines) + "\n"


def write_png(path: Path, image: np.ndarray) -> None:
    """PNG through GDAL (rasterio), written to a temp file then renamed."""
    import warnings

    import rasterio
    from rasterio.errors import NotGeoreferencedWarning

    with atomic_path(Path(path), suffix=".png") as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(tmp, "w", driver="PNG", width=image.shape[1], height=image.shape[0],
                           count=3, dtype="uint8") as dst:
            dst.write(np.moveaxis(image, 2, 0))
        tmp.with_name(tmp.name + ".aux.xml").unlink(missing_ok=True)


def write_dataset(out: Path, n: int, *, seed: int = 0, size: int = 256, progress=None,
                  classes: tuple[str, ...] = DEFAULT_CLASSES) -> dict:
    """`n` scenes as images/NNNNN.png + labelTxt/NNNNN.txt (DOTA) + dataset.json."""
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "labelTxt").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    counts: dict[str, int] = {}
    for i in range(n):
        scene = generate_scene(rng, size=size, classes=classes)
        stem = f"{i:05d}"
        write_png(out / "images" / f"{stem}.png", scene.image)
        write_atomic(out / "labelTxt" / f"{stem}.txt", dota_text(scene).encode())
        for o in scene.objects:
            counts[o.cls] = counts.get(o.cls, 0) + 1
        if progress:
            progress(1)
    meta = {"generator": "casemate.imagery.synth", "seed": seed, "n": n, "size": size,
            "classes": list(classes), "objects": counts}
    write_atomic(out / "dataset.json", json.dumps(meta, indent=2).encode())
    return meta
