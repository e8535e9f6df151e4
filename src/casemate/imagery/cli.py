"""`casemate detect` and `casemate imagery synth|train|eval|register`."""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import click

from casemate.cli import state_of
from casemate.errors import NotFound, UsageError


def _progress(enabled: bool):
    """A rich progress bar on stderr (quiet when stderr is not a terminal)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    console=Console(stderr=True), disable=not enabled, transient=True)


def register_model(ws: Any, user: Any, ref: str | None, label: str | None = None) -> tuple[Any, Any]:
    """The detector and its catalog version (kind "model"); registered once per ONNX digest.

    `ref` is a catalog version id of kind model, a model name ("default") or a path. The label of
    a newly registered model: `label`, else the manifest's "label" (its training data's), else NP.
    """
    from casemate.imagery.runtime import detector_from, load_detector

    cat = ws.catalog
    ref = ref or "default"
    if not Path(ref).exists() and "/" not in ref and ref != "default":
        from casemate.imagery.runtime import PACKAGE_MODELS

        if not (PACKAGE_MODELS / ref).is_dir():
            try:
                v = cat.get(user, ref)
            except NotFound:
                v = None
            if v is not None:
                if v.kind != "model" or "manifest" not in v.metadata:
                    raise UsageError(f"{ref}: catalog item is a {v.kind}, not a detector model")
                det = detector_from(cat.blob_path(user, v.id), v.metadata["manifest"], manifest_path=ref)
                return det, v
    det = load_detector(ref)
    digest = det.digest.split(":", 1)[1]
    for v in cat.iter_versions(user, kind="model"):
        if v.sha256 == digest and "manifest" in v.metadata:
            return det, v
    manifest = dict(det.manifest)
    v = cat.put(user, det.onnx_path, name=f"{det.name}.onnx", kind="model",
                label=label or manifest.get("label") or "NP",
                metadata={"manifest": manifest, "role": "imagery-detector"}, source_path=str(det.onnx_path))
    return det, v


def _is_path(ref: str) -> bool:
    return Path(ref).exists() or "/" in ref or "." in Path(ref).name


@click.command("detect")
@click.argument("rasters", nargs=-1, required=True)
@click.option("--model", "model_ref", default=None, metavar="NAME|PATH|ID",
              help="Detector: 'default', a model folder, a manifest, or a catalog model version id.")
@click.option("--out", "out", type=click.Path(), default=None,
              help="Also write GeoJSON (WGS84) here, and a GeoPackage (raster CRS) beside it; a folder "
                   "when several rasters are given.")
@click.option("--label", "-l", default=None, help="Label for raster files ingested by this command.")
@click.option("--gsd", type=float, default=None, help="Metres per pixel, for images without georeferencing.")
@click.option("--tile", type=click.IntRange(64, 4096), default=None, help="Tile size (default: the model's).")
@click.option("--overlap", type=click.IntRange(0, 2048), default=128, show_default=True)
@click.option("--batch", type=click.IntRange(1, 64), default=4, show_default=True)
@click.option("--workers", type=click.IntRange(1, 16), default=2, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@click.pass_context
def detect_cmd(ctx: click.Context, rasters: tuple[str, ...], model_ref: str | None, out: str | None,
               label: str | None, gsd: float | None, tile: int | None, overlap: int, batch: int,
               workers: int, as_json: bool) -> None:
    """Find vehicles, ships and aircraft on rasters (files or catalog image ids), graded D/R/I."""
    from casemate.imagery.export import _atomic, write_geojson, write_geopackage
    from casemate.imagery.pipeline import detect_raster
    from casemate.imagery.raster import RasterSource
    from casemate.security.labels import parse_label

    if label is not None:
        parse_label(label)
    if out and len(rasters) > 1 and Path(out).suffix:
        raise UsageError(f"--out {out}: with several rasters --out must be a folder")
    state = state_of(ctx)
    ws = state.workspace()
    user = state.user()
    cat = ws.catalog
    # Resolve and validate every input before storing anything.
    inputs: list[tuple[str, Path, Any]] = []
    for ref in rasters:
        p = Path(ref)
        if p.exists() or _is_path(ref):
            if not p.exists():
                raise UsageError(f"{ref}: no such file")
            with RasterSource(p, gsd_override=gsd):
                pass
            if label is None:
                raise UsageError(f"{ref}: a file must be ingested with a classification label: add --label "
                                 "(e.g. --label DR), or give the catalog id of an ingested image")
            inputs.append((ref, p, None))
        else:
            v = cat.get(user, ref)
            path = cat.blob_path(user, v.id)
            with RasterSource(path, gsd_override=gsd):
                pass
            inputs.append((ref, path, v))
    det, model_v = register_model(ws, user, model_ref)
    results = []
    with _progress(not as_json and sys.stderr.isatty()) as bar:
        for ref, path, v in inputs:
            if v is None:
                v = cat.put(user, path, name=path.name, kind="image", label=label, source_path=str(path.resolve()))
            task = bar.add_task(f"detect {Path(ref).name}", total=None)
            res = detect_raster(path, det, tile=tile, overlap=overlap, batch=batch, workers=workers, gsd=gsd,
                                progress=lambda d, n, task=task: bar.update(task, completed=d, total=n))
            res.source = ref
            levels = {k: sum(1 for d in res.detections if d.dri_level == k) for k in ("D", "R", "I")}
            meta = {"image": v.id, "model": model_v.id, "model_digest": det.digest, "stats": res.stats,
                    "coordinates": res.coordinates, "crs": res.georef.crs_name, "gsd_m": res.georef.gsd_m,
                    "dri_counts": levels, "notes": res.notes}
            stem = Path(v.name).stem or v.id
            with tempfile.TemporaryDirectory() as tmp:
                gj = write_geojson(res, Path(tmp) / "d.geojson",
                                   extra_meta={"image_version": v.id, "model_version": model_v.id})
                gp = write_geopackage(res, Path(tmp) / "d.gpkg")
                geo_v = cat.put(user, gj, name=f"{stem}.detections.geojson", kind="detections",
                                parents=(v.id, model_v.id), metadata={**meta, "format": "geojson"})
                gpkg_v = cat.put(user, gp, name=f"{stem}.detections.gpkg", kind="detections",
                                 parents=(v.id, model_v.id), metadata={**meta, "format": "gpkg"})
                if out:
                    o = Path(out)
                    target = o / f"{stem}.geojson" if (len(inputs) > 1 or o.is_dir() or not o.suffix) else o
                    if target.suffix == ".gpkg":
                        target = target.with_suffix(".geojson")
                    for src_file, dst_file in ((gj, target), (gp, target.with_suffix(".gpkg"))):
                        _atomic(dst_file, lambda t, s=src_file: shutil.copyfile(s, t))
            results.append({"source": ref, "image_version": v.id, "model_version": model_v.id,
                            "version": geo_v.id, "gpkg_version": gpkg_v.id, "label": str(geo_v.label),
                            **meta, "detections": [d.to_json() for d in res.detections]})
    if as_json:
        click.echo(json.dumps(results, indent=1))
        return
    for r in results:
        c = r["dri_counts"]
        click.echo(f"{r['source']}: {len(r['detections'])} detections (D {c['D']}, R {c['R']}, I {c['I']}) "
                   f"-> {r['version']} (GeoJSON), {r['gpkg_version']} (GeoPackage)")
        for note in r["notes"]:
            click.echo(f"  note: {note}")


@click.group("imagery")
def imagery_group() -> None:
    """Imagery: synthetic data, training and evaluation of the detector."""


@imagery_group.command("synth")
@click.option("--out", required=True, type=click.Path(file_okay=False))
@click.option("--n", "n", default=100, show_default=True, type=click.IntRange(1, 1_000_000))
@click.option("--size", default=256, show_default=True, type=click.IntRange(64, 8192))
@click.option("--seed", default=0, show_default=True, type=int)
def synth_cmd(out: str, n: int, size: int, seed: int) -> None:
    """Write N procedural scenes with oriented labels (DOTA format)."""
    from casemate.imagery.synth import write_dataset

    with _progress(sys.stderr.isatty()) as bar:
        task = bar.add_task("synth", total=n)
        meta = write_dataset(Path(out), n, seed=seed, size=size, progress=lambda k: bar.advance(task, k))
    click.echo(f"{n} scenes in {out}: " + ", ".join(f"{k.rsplit('/', 1)[-1]} {v}" for k, v in meta["objects"].items()))


@imagery_group.command("train")
@click.option("--data", "data", required=True, multiple=True, type=click.Path(exists=True, file_okay=False))
@click.option("--out", required=True, type=click.Path(file_okay=False))
@click.option("--epochs", default=30, show_default=True, type=click.IntRange(1, 100_000))
@click.option("--minutes", default=None, type=float, help="Stop (with an annealed learning rate) after this long.")
@click.option("--batch", default=16, show_default=True, type=click.IntRange(1, 1024))
@click.option("--width", default=16, show_default=True, type=click.IntRange(4, 256))
@click.option("--lr", default=3e-3, show_default=True, type=float)
@click.option("--threads", default=1, show_default=True, type=click.IntRange(1, 256))
@click.option("--label", "-l", default="NP", show_default=True, help="Label of the training data (the model's label).")
@click.option("--json", "as_json", is_flag=True)
def train_cmd(data: tuple[str, ...], out: str, epochs: int, minutes: float | None, batch: int, width: int,
              lr: float, threads: int, label: str, as_json: bool) -> None:
    """Train the oriented detector (CPU, or a GPU when present); export ONNX + manifest."""
    from casemate.security.labels import format_label, parse_label

    lab = format_label(parse_label(label))
    try:
        from casemate.imagery.model.train import train
    except ModuleNotFoundError as exc:
        from casemate.errors import ModelMissing

        raise ModelMissing(f"training needs torch ({exc.name} missing): pip install 'casemate[train]'") from None

    def show(rec: dict) -> None:
        if not as_json:
            click.echo(f"epoch {rec['epoch']}: loss {rec['loss']:.3f} ({rec['minutes']} min)", err=True)

    res = train([Path(d) for d in data], Path(out), epochs=epochs, max_minutes=minutes, batch=batch, width=width,
                lr=lr, threads=threads, progress=show, manifest_extra={"name": Path(out).name, "label": lab})
    if as_json:
        click.echo(json.dumps(res, indent=1))
    else:
        click.echo(f"model written to {out} (model.onnx, manifest.json, checkpoint.safetensors)")


@imagery_group.command("eval")
@click.option("--model", "model_ref", default="default", show_default=True)
@click.option("--data", required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--limit", default=None, type=click.IntRange(1, 10_000_000))
@click.option("--json", "as_json", is_flag=True)
def eval_cmd(model_ref: str, data: str, limit: int | None, as_json: bool) -> None:
    """mAP50 (oriented IoU) per class and per DRI level on a labelled folder."""
    from casemate.imagery.evaluate import evaluate

    res = evaluate(model_ref, data, limit=limit)
    if as_json:
        click.echo(json.dumps(res, indent=1))
        return
    click.echo(f"{res['model']} on {res['images']} images: mAP50 {res['map50']:.3f}")
    for name, v in res["per_class"].items():
        ap = "n/a" if v["ap50"] is None else f"{v['ap50']:.3f}"
        click.echo(f"  {name:34s} AP50 {ap}  (gt {v['gt']})")
    for level, v in res["per_level"].items():
        m = "n/a" if v["map50"] is None else f"{v['map50']:.3f}"
        click.echo(f"  level {level}: mAP50 {m}")


@imagery_group.command("register")
@click.argument("model_ref")
@click.option("--label", "-l", default=None, help="Label (default: the manifest's, else NP).")
@click.pass_context
def register_cmd(ctx: click.Context, model_ref: str, label: str | None) -> None:
    """Register a detector (folder, manifest or .onnx) in the catalog as a version of kind model."""
    state = state_of(ctx)
    _, v = register_model(state.workspace(), state.user(), model_ref, label)
    click.echo(v.id)
