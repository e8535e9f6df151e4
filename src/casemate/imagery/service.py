"""Imagery as library functions: what the CLI and the HTTP API both call.

`detect_source` validates every input first (options, label, model, raster), then runs the
detector, then stores: the image (for a file), the model (once per ONNX digest) and the
detections derived from both. A bad input raises a `UsageError` naming the option and stores
nothing.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from casemate.catalog.models import Version
from casemate.errors import NotFound, UsageError
from casemate.imagery.pipeline import DetectionResult, Detector
from casemate.imagery.raster import BandSpec, RasterSource
from casemate.security import User
from casemate.workspace import Workspace

MIN_TILE, MAX_TILE = 64, 4096


def imagery_config(ws: Workspace) -> dict[str, Any]:
    """The workspace's `imagery` settings (the one place that reads them).

    Keys read: `model` (default detector), `batch`, `workers`.
    """
    conf = getattr(ws, "config", None)
    section = conf.get("imagery", {}) if isinstance(conf, dict) else getattr(conf, "imagery", None)
    if section is None:
        return {}
    if hasattr(section, "model_dump"):
        section = section.model_dump()
    return dict(section) if isinstance(section, dict) else {}


@dataclass(frozen=True)
class DetectOptions:
    tile: int | None = None  # None: the model's input size
    overlap: int = 128
    batch: int = 1  # more tiles per call cost memory and buy no speed on CPU (docs/benchmarks.md)
    workers: int = 2
    gsd: float | None = None  # metres per pixel for rasters without georeferencing
    bands: str | None = None  # e.g. "3,2,1"; None: the first three (or the single band)

    def check(self, model_input: int) -> None:
        """Refuse impossible combinations, naming the option (before anything runs or is stored)."""
        tile = self.tile if self.tile is not None else model_input
        if not MIN_TILE <= tile <= MAX_TILE:
            raise UsageError(f"--tile {tile}: must be between {MIN_TILE} and {MAX_TILE} px")
        if self.overlap < 0:
            raise UsageError(f"--overlap {self.overlap}: must be 0 or more")
        if self.overlap >= tile:
            raise UsageError(f"--overlap {self.overlap} must be smaller than --tile {tile}: lower --overlap "
                             f"(e.g. --overlap {tile // 4}) or raise --tile")
        if self.batch < 1:
            raise UsageError(f"--batch {self.batch}: must be 1 or more")
        if self.workers < 1:
            raise UsageError(f"--workers {self.workers}: must be 1 or more")
        if self.gsd is not None and not 0.01 <= self.gsd <= 1000:
            raise UsageError(f"--gsd {self.gsd}: metres per pixel must be between 0.01 and 1000")
        BandSpec.parse(self.bands)


@dataclass
class DetectOutcome:
    source: str
    image: Any  # catalog Version of kind image
    model: Any  # catalog Version of kind model
    geojson: Any  # catalog Version of kind detections (GeoJSON, WGS84)
    gpkg: Any  # catalog Version of kind detections (GeoPackage, raster CRS)
    result: DetectionResult
    meta: dict

    def to_json(self) -> dict:
        return {"source": self.source, "image_version": self.image.id, "model_version": self.model.id,
                "version": self.geojson.id, "gpkg_version": self.gpkg.id, "label": str(self.geojson.label),
                **self.meta, "detections": [d.to_json() for d in self.result.detections]}


def _looks_like_path(ref: str) -> bool:
    return Path(ref).exists() or "/" in ref or "." in Path(ref).name


def resolve_detector(ws: Workspace, user: User, ref: str | None) -> tuple[Detector, Version | None]:
    """The detector for `ref` and its catalog version if it already is one (else None); stores nothing.

    `ref`: a catalog version id of kind model, a model name ("default"), a folder, manifest or .onnx.
    """
    from casemate.imagery.runtime import PACKAGE_MODELS, detector_from, load_detector

    ref = ref or str(imagery_config(ws).get("model") or "default")
    if not Path(ref).exists() and "/" not in ref and not (PACKAGE_MODELS / ref).is_dir():
        try:
            v = ws.catalog.get(user, ref)
        except NotFound:
            v = None
        if v is not None:
            if v.kind != "model" or "manifest" not in v.metadata:
                raise UsageError(f"{ref}: catalog item is a {v.kind}, not a detector model")
            return detector_from(ws.catalog.blob_path(user, v.id), v.metadata["manifest"], manifest_path=ref), v
    return load_detector(ref), None


def register_detector(ws: Workspace, user: User, det: Detector, label: str | None = None) -> Version:
    """The catalog version of `det` (kind "model"), stored once per ONNX digest.

    Label of a new one: `label`, else the manifest's "label" (its training data's), else NP.
    """
    digest = det.digest.split(":", 1)[1]
    for v in ws.catalog.iter_versions(user, kind="model"):
        if v.sha256 == digest and "manifest" in v.metadata:
            return v
    manifest = dict(det.manifest)
    return ws.catalog.put(user, det.onnx_path, name=f"{det.name}.onnx", kind="model",
                          label=label or manifest.get("label") or "NP",
                          metadata={"manifest": manifest, "role": "imagery-detector"},
                          source_path=str(det.onnx_path))


def register_model(ws: Workspace, user: User, ref: str | None, label: str | None = None) -> tuple[Detector, Version]:
    det, v = resolve_detector(ws, user, ref)
    return det, v or register_detector(ws, user, det, label)


@dataclass
class _Input:
    ref: str
    path: Path
    version: Any  # None for a file not yet ingested


def _resolve_input(ws: Workspace, user: User, ref: str, label: str | None, opts: DetectOptions) -> _Input:
    p = Path(ref).expanduser()
    if p.exists() or _looks_like_path(ref):
        if not p.exists():
            raise UsageError(f"{ref}: no such file")
        if label is None:
            raise UsageError(f"{ref}: a file must be ingested with a classification label: add --label "
                             "(e.g. --label DR), or give the catalog id of an ingested image")
        path, version = p, None
    else:
        version = ws.catalog.get(user, ref)  # hidden and missing look the same
        if version.kind not in ("image", "other"):
            raise UsageError(f"{ref} ({version.name}) is a {version.kind}, not an image")
        path = ws.catalog.blob_path(user, version.id)
    with RasterSource(path, gsd_override=opts.gsd) as src:
        src.band_spec(opts.bands)  # a band beyond the raster's count is refused here
    return _Input(ref, path, version)


def detect_sources(ws: Workspace, user: User, sources: list[str], *, model: str | None = None,
                   label: str | None = None, options: DetectOptions | None = None,
                   out: str | Path | None = None,
                   progress: Callable[[str, int, int], None] | None = None) -> list[DetectOutcome]:
    """Detect on each source (catalog image id or raster file); store and return the outcomes.

    Everything is validated before the first detection runs: options, label, model and every
    raster; nothing is stored when one of them is wrong.
    """
    from casemate.fileutil import atomic_path
    from casemate.imagery.export import write_geojson, write_geopackage
    from casemate.imagery.pipeline import detect_raster

    if not sources:
        raise UsageError("give at least one raster (a file or a catalog image id)")
    conf = imagery_config(ws)
    opts = options or DetectOptions(batch=int(conf.get("batch", 1)), workers=int(conf.get("workers", 2)))
    if out and len(sources) > 1 and Path(out).suffix:
        raise UsageError(f"--out {out}: with several rasters --out must be a folder")
    if label is not None:
        ws.catalog.check_label(user, label)
    det, model_v = resolve_detector(ws, user, model)
    opts.check(det.input_size)
    inputs = [_resolve_input(ws, user, ref, label, opts) for ref in sources]
    # Run everything before storing anything: a failure on the second raster stores nothing.
    results = []
    for inp in inputs:
        def tick(done: int, total: int, ref: str = inp.ref) -> None:
            if progress:
                progress(ref, done, total)
        res = detect_raster(inp.path, det, tile=opts.tile, overlap=opts.overlap, batch=opts.batch,
                            workers=opts.workers, gsd=opts.gsd, bands=opts.bands, progress=tick)
        res.source = inp.ref
        results.append(res)
    model_v = model_v or register_detector(ws, user, det)
    outcomes = []
    for inp, res in zip(inputs, results, strict=True):
        v = inp.version
        if v is None:
            v = ws.catalog.put(user, inp.path, name=inp.path.name, kind="image", label=label,
                               source_path=str(inp.path.resolve()), source_key=str(inp.path.resolve()))
        levels = {k: sum(1 for d in res.detections if d.dri_level == k) for k in ("D", "R", "I")}
        meta = {"image": v.id, "model": model_v.id, "model_digest": det.digest, "stats": res.stats,
                "coordinates": res.coordinates, "crs": res.georef.crs_name, "gsd_m": res.georef.gsd_m,
                "dri_counts": levels, "notes": res.notes, "bands": res.bands}
        stem = Path(v.name).stem or v.id
        with tempfile.TemporaryDirectory() as tmp:
            gj = write_geojson(res, Path(tmp) / "d.geojson",
                               extra_meta={"image_version": v.id, "model_version": model_v.id})
            gp = write_geopackage(res, Path(tmp) / "d.gpkg")
            geo_v = ws.catalog.put(user, gj, name=f"{stem}.detections.geojson", kind="detections",
                                   parents=(v.id, model_v.id), metadata={**meta, "format": "geojson"})
            gpkg_v = ws.catalog.put(user, gp, name=f"{stem}.detections.gpkg", kind="detections",
                                    parents=(v.id, model_v.id), metadata={**meta, "format": "gpkg"})
            if out:
                o = Path(out)
                target = o / f"{stem}.geojson" if (len(inputs) > 1 or o.is_dir() or not o.suffix) else o
                if target.suffix == ".gpkg":
                    target = target.with_suffix(".geojson")
                for src_file, dst_file in ((gj, target), (gp, target.with_suffix(".gpkg"))):
                    with atomic_path(dst_file) as t:
                        t.write_bytes(src_file.read_bytes())
        outcomes.append(DetectOutcome(inp.ref, v, model_v, geo_v, gpkg_v, res, meta))
    return outcomes


def detect_source(ws: Workspace, user: User, source: str, *, model: str | None = None, label: str | None = None,
                  tile: int | None = None, overlap: int = 128, batch: int = 1, workers: int = 2,
                  gsd: float | None = None, bands: str | None = None, out: str | Path | None = None,
                  progress: Callable[[str, int, int], None] | None = None) -> DetectOutcome:
    """Detect on one raster (file or catalog image id): validate, run, store; see `detect_sources`."""
    opts = DetectOptions(tile=tile, overlap=overlap, batch=batch, workers=workers, gsd=gsd, bands=bands)
    return detect_sources(ws, user, [source], model=model, label=label, options=opts, out=out,
                          progress=progress)[0]


@dataclass
class CompareOutcome:
    before: Any  # detections Version (GeoJSON) of the first date
    after: Any
    change: Any  # the stored change Version (GeoJSON), derived from both
    result: Any  # casemate.imagery.change.ChangeResult

    def to_json(self) -> dict:
        return {"version": self.change.id, "label": str(self.change.label), "before": self.before.id,
                "after": self.after.id, "summary": self.result.summary, "alerts": self.result.alerts,
                "changes": len(self.result.changes), "params": self.result.params}


def _detections_version(ws: Workspace, user: User, ref: str) -> Version | None:
    """The GeoJSON detections version `ref` names (itself, or the GeoJSON twin of a GeoPackage);
    None when `ref` is a file or an image (to be detected)."""
    p = Path(ref).expanduser()
    if p.exists() or _looks_like_path(ref):
        return None
    v = ws.catalog.get(user, ref)
    if v.kind != "detections":
        return None
    if v.metadata.get("format") != "geojson":
        twins = [c for c in ws.catalog.children(user, v.metadata.get("image", ""), kind="detections")
                 if c.metadata.get("format") == "geojson" and c.metadata.get("model") == v.metadata.get("model")]
        if not twins:
            raise UsageError(f"{ref}: a GeoPackage without its GeoJSON twin; give the GeoJSON detections version")
        v = twins[-1]
    return v


def compare_sources(ws: Workspace, user: User, before: str, after: str, *, zones: str | Path | None = None,
                    alert: int | None = None, label: str | None = None, model: str | None = None,
                    options: DetectOptions | None = None, same_m: float | None = None,
                    move_m: float | None = None, min_score: float = 0.0,
                    out: str | Path | None = None) -> CompareOutcome:
    """Change between two dates. `before`/`after`: detections versions, image versions or raster files
    (files need `label`; images are detected first, their detections stored as usual). Stores the
    change as GeoJSON (kind "change") derived from both detections versions: its label is at least
    their lub (`label` may raise it)."""
    import json as _json

    from casemate.fileutil import atomic_path, write_atomic
    from casemate.imagery.change import compare, objects_from_geojson, read_zones

    if alert is not None and alert < 1:
        raise UsageError(f"--alert {alert}: must be a positive integer")
    for name, val in (("--same-m", same_m), ("--move-m", move_m)):
        if val is not None and val <= 0:
            raise UsageError(f"{name} {val}: must be positive metres")
    zone_list = read_zones(Path(zones), alert) if zones else []
    if label is not None:
        ws.catalog.check_label(user, label)
    refs = (before, after)
    if before == after:
        raise UsageError("compare needs two different dates (two different rasters or detections)")
    dets = [_detections_version(ws, user, ref) for ref in refs]
    docs: dict[int, dict] = {}
    for k, v in enumerate(dets):
        if v is not None:
            docs[k] = _json.loads(ws.catalog.read_bytes(user, v.id))
            objects_from_geojson(docs[k], refs[k])  # pixel-only detections are refused before anything runs
    todo = [k for k, v in enumerate(dets) if v is None]
    for k in todo:  # a raster must be georeferenced: checked before anything is detected or stored
        inp = _resolve_input(ws, user, refs[k], label, options or DetectOptions())
        with RasterSource(inp.path) as src:
            if src.georef.crs_wkt is None:
                raise UsageError(f"{refs[k]}: not georeferenced: change needs georeferenced rasters "
                                 "(or detections made on them)")
    if todo:
        outcomes = detect_sources(ws, user, [refs[k] for k in todo], model=model, label=label, options=options)
        for k, o in zip(todo, outcomes, strict=True):
            docs[k] = _json.loads(ws.catalog.read_bytes(user, o.geojson.id))
            dets[k] = o.geojson
    vb, va = dets
    if vb.id == va.id:
        raise UsageError("compare needs two different dates (two different rasters or detections)")
    res = compare(objects_from_geojson(docs[0], before), objects_from_geojson(docs[1], after),
                  zones=zone_list, same_m=same_m, move_m=move_m, min_score=min_score)
    doc = res.to_geojson({"before": vb.id, "after": va.id, "zones": [z.name for z in zone_list]})
    payload = _json.dumps(doc)
    with tempfile.TemporaryDirectory() as tmp:
        f = Path(tmp) / "change.geojson"
        write_atomic(f, payload)
        name = f"{Path(vb.name).stem.split('.')[0]}--{Path(va.name).stem.split('.')[0]}.change.geojson"
        cv = ws.catalog.put(user, f, name=name, kind="change", parents=(vb.id, va.id), label=label,
                            metadata={"format": "geojson", "before": vb.id, "after": va.id,
                                      "summary": res.summary, "alerts": res.alerts, "params": res.params})
    if out:
        with atomic_path(Path(out)) as t:
            t.write_text(payload, encoding="utf-8")
    return CompareOutcome(vb, va, cv, res)
