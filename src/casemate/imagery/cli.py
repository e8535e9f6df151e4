"""`casemate detect` and `casemate imagery synth|train|eval|register`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from casemate.cli import state_of
from casemate.errors import UsageError


def _progress(enabled: bool):
    """A rich progress bar on stderr (quiet when stderr is not a terminal)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    console=Console(stderr=True), disable=not enabled, transient=True)


@click.command("detect")
@click.argument("rasters", nargs=-1, required=True)
@click.option("--model", "model_ref", default=None, metavar="NAME|PATH|ID",
              help="Detector: 'default', a model folder, a manifest, or a catalog model version id.")
@click.option("--out", "out", type=click.Path(), default=None,
              help="Also write GeoJSON (WGS84) here, and a GeoPackage (raster CRS) beside it; a folder "
                   "when several rasters are given.")
@click.option("--label", "-l", default=None, help="Label for raster files ingested by this command.")
@click.option("--gsd", type=float, default=None, help="Metres per pixel, for images without georeferencing.")
@click.option("--bands", default=None, metavar="R,G,B|B",
              help="Bands fed to the model, from 1 (default: the file's red/green/blue, else 1,2,3, else 1).")
@click.option("--tile", type=int, default=None, help="Tile size in model pixels (default: the model's).")
@click.option("--overlap", type=int, default=128, show_default=True)
@click.option("--batch", type=int, default=1, show_default=True)
@click.option("--workers", type=int, default=2, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@click.pass_context
def detect_cmd(ctx: click.Context, rasters: tuple[str, ...], model_ref: str | None, out: str | None,
               label: str | None, gsd: float | None, bands: str | None, tile: int | None, overlap: int, batch: int,
               workers: int, as_json: bool) -> None:
    """Find vehicles, ships and aircraft on rasters (files or catalog image ids), graded D/R/I."""
    from casemate.factory.registry import resolve_detector_ref
    from casemate.imagery.service import DetectOptions, detect_sources

    state = state_of(ctx)
    # An alias ("production") or a registered model's id: the verified model's version (signature,
    # every file); the CLI composes the factory and the imagery, which know nothing of each other.
    model_ref = resolve_detector_ref(state.workspace(), state.user(), model_ref)
    opts = DetectOptions(tile=tile, overlap=overlap, batch=batch, workers=workers, gsd=gsd, bands=bands)
    with _progress(not as_json and sys.stderr.isatty()) as bar:
        tasks: dict[str, Any] = {}

        def tick(ref: str, done: int, total: int) -> None:
            if ref not in tasks:
                tasks[ref] = bar.add_task(f"detect {Path(ref).name}", total=total)
            bar.update(tasks[ref], completed=done, total=total)

        outcomes = detect_sources(state.workspace(), state.user(), list(rasters), model=model_ref, label=label,
                                  options=opts, out=out, progress=tick)
    results = [o.to_json() for o in outcomes]
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
@click.option("--names", default=None, metavar="A,B,...", help="YOLO class names by id, for folders that give none.")
@click.option("--gsd", type=float, default=None, help="Metres per pixel of images whose labels do not say.")
@click.option("--init", "init", default=None, metavar="MODEL",
              help="Warm start from an exported model of the same width (folder or name, e.g. default).")
@click.option("--json", "as_json", is_flag=True)
def train_cmd(data: tuple[str, ...], out: str, epochs: int, minutes: float | None, batch: int, width: int,
              lr: float, threads: int, label: str, names: str | None, gsd: float | None, init: str | None,
              as_json: bool) -> None:
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

    from casemate.imagery.model.train import TrainSet
    from casemate.imagery.runtime import resolve_model

    if gsd is not None and gsd <= 0:
        raise UsageError(f"--gsd {gsd}: metres per pixel must be positive")
    name_list = [n.strip() for n in names.split(",")] if names else None
    init_onnx = resolve_model(init)[0] if init else None
    res = train([TrainSet(Path(d), names=name_list, gsd=gsd) for d in data], Path(out), epochs=epochs,
                max_minutes=minutes, batch=batch, width=width, lr=lr, threads=threads, init_onnx=init_onnx,
                progress=show, manifest_extra={"name": Path(out).name, "label": lab})
    if as_json:
        click.echo(json.dumps(res, indent=1))
    else:
        click.echo(f"model written to {out} (model.onnx, manifest.json, checkpoint.safetensors)")


@imagery_group.command("eval")
@click.option("--model", "model_ref", default="default", show_default=True)
@click.option("--data", required=True, type=click.Path(exists=True, file_okay=False),
              help="DOTA (images/ + labelTxt/), YOLO (images/ + labels/) or GeoTIFF + GeoJSON folder.")
@click.option("--names", default=None, metavar="A,B,...",
              help="YOLO class names by id, when the folder has no data.yaml / classes.txt.")
@click.option("--class-map", "class_map", default=None, type=click.Path(exists=True, dir_okay=False),
              help="JSON {dataset name: taxonomy node}, instead of the built-in map of common names.")
@click.option("--gsd", type=float, default=None, help="Metres per pixel where the labels do not say.")
@click.option("--images", default=None, metavar="STEM,...", help="Only these images (e.g. a held-out split).")
@click.option("--limit", default=None, type=click.IntRange(1, 10_000_000))
@click.option("--json", "as_json", is_flag=True)
def eval_cmd(model_ref: str, data: str, names: str | None, class_map: str | None, gsd: float | None,
             images: str | None, limit: int | None, as_json: bool) -> None:
    """AP50 per class and per DRI level on a labelled folder (oriented IoU, or envelope IoU for upright labels)."""
    from casemate.imagery.evaluate import evaluate

    cmap = None
    if class_map:
        try:
            cmap = json.loads(Path(class_map).read_text(encoding="utf-8"))
        except ValueError as exc:
            raise UsageError(f"--class-map {class_map}: not valid JSON ({exc})") from None
        if not isinstance(cmap, dict) or not all(isinstance(v, str) for v in cmap.values()):
            raise UsageError(f"--class-map {class_map}: expected a JSON object of name -> 'category/class/type'")
    if gsd is not None and gsd <= 0:
        raise UsageError(f"--gsd {gsd}: metres per pixel must be positive")
    res = evaluate(model_ref, data, limit=limit, gsd=gsd, class_map=cmap,
                   names=[n.strip() for n in names.split(",")] if names else None,
                   images={n.strip() for n in images.split(",")} if images else None)
    if as_json:
        click.echo(json.dumps(res, indent=1))
        return
    m = "n/a" if res["map50"] is None else f"{res['map50']:.3f}"
    d = "n/a" if res["detection_ap50"] is None else f"{res['detection_ap50']:.3f}"
    click.echo(f"{res['model']} on {res['images']} images ({res['iou_kind']}): detection-level AP50 {d}, "
               f"mAP50 over leaf classes {m}")
    for name, v in res["per_class"].items():
        if v["gt"] or v["predictions"]:
            ap = "n/a" if v["ap50"] is None else f"{v['ap50']:.3f}"
            click.echo(f"  {name:34s} AP50 {ap}  (gt {v['gt']})")
    for level, v in res["per_level"].items():
        lv = "n/a" if v["map50"] is None else f"{v['map50']:.3f}"
        nodes = ", ".join(f"{k} {'n/a' if x['ap50'] is None else format(x['ap50'], '.3f')} (gt {x['gt']})"
                          for k, x in sorted(v["classes"].items()) if x["gt"])
        click.echo(f"  level {level}: mAP50 {lv}" + (f"  [{nodes}]" if nodes else ""))
    for note in res["notes"]:
        click.echo(f"  note: {note}")


@imagery_group.command("compare")
@click.argument("before")
@click.argument("after")
@click.option("--zones", type=click.Path(exists=True, dir_okay=False), default=None,
              help="GeoJSON polygons (WGS84) with 'name' and optional 'alert_threshold' / 'alert_thresholds'.")
@click.option("--alert", type=int, default=None, help="Default alert threshold (count change) for zones without one.")
@click.option("--label", "-l", default=None, help="Label for raster files ingested (and to raise the change's).")
@click.option("--model", "model_ref", default=None, metavar="NAME|PATH|ID", help="Detector for rasters.")
@click.option("--gsd", type=float, default=None)
@click.option("--same-m", type=float, default=None, help="Within this many metres an object is unchanged.")
@click.option("--move-m", type=float, default=None, help="Within this many metres an object has moved.")
@click.option("--min-score", type=float, default=0.0, show_default=True)
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Also write the change GeoJSON here.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def compare_cmd(ctx: click.Context, before: str, after: str, zones: str | None, alert: int | None,
                label: str | None, model_ref: str | None, gsd: float | None, same_m: float | None,
                move_m: float | None, min_score: float, out: str | None, as_json: bool) -> None:
    """Objects that appeared, departed or moved between two dates (rasters or their detections)."""
    from casemate.imagery.change import summary_rows
    from casemate.imagery.service import DetectOptions, compare_sources

    state = state_of(ctx)
    res = compare_sources(state.workspace(), state.user(), before, after, zones=zones, alert=alert, label=label,
                          model=model_ref, options=DetectOptions(gsd=gsd), same_m=same_m, move_m=move_m,
                          min_score=min_score, out=out)
    if as_json:
        click.echo(json.dumps(res.to_json(), indent=1))
        return
    click.echo(f"change {res.before.id} -> {res.after.id}: stored as {res.change.id} (label {res.change.label})")
    click.echo(f"{'zone':24s} {'class':10s} {'before':>6s} {'after':>6s} {'appeared':>8s} {'departed':>8s} {'moved':>6s}")
    for z, c, nb, na, ap, de, mv in summary_rows(res.result.summary):
        click.echo(f"{z[:24]:24s} {c[:10]:10s} {nb:6d} {na:6d} {ap:8d} {de:8d} {mv:6d}")
    for a in res.result.alerts:
        click.echo(f"ALERT {a['zone']}: {a['class']} {a['before']} -> {a['after']} ({a['delta']:+d}, threshold {a['threshold']})")


@imagery_group.command("register")
@click.argument("model_ref")
@click.option("--label", "-l", default=None, help="Label (default: the manifest's, else NP).")
@click.pass_context
def register_cmd(ctx: click.Context, model_ref: str, label: str | None) -> None:
    """Register a detector (folder, manifest or .onnx) in the catalog as a version of kind model."""
    from casemate.imagery.service import register_model

    state = state_of(ctx)
    _, v = register_model(state.workspace(), state.user(), model_ref, label)
    click.echo(v.id)
