"""CLI faces of the model factory: `dataset`, `jobs`, `train`, `models`, `check-labels`.

Thin: each command parses, calls the library in casemate.factory, prints.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from casemate.cli import state_of
from casemate.security.labels import format_label


def _echo_json(obj: Any) -> None:
    click.echo(json.dumps(obj, ensure_ascii=False, indent=2))


def _class_list(value: str | None) -> list[str] | None:
    if value is None:
        return None
    names = [c.strip() for c in value.split(",")]
    if not all(names):
        raise click.BadParameter("give class names separated by commas, e.g. car,truck,bus")
    return names


# -- dataset -------------------------------------------------------------------------------------
@click.group("dataset")
def dataset_group() -> None:
    """Labelled datasets in the catalog: import, export, split, ls, show."""


@dataset_group.command("import")
@click.argument("folder", type=click.Path())
@click.option("--format", "fmt", required=True, type=click.Choice(["yolo", "yolo-obb", "dota", "coco"]))
@click.option("--label", "-l", required=True, help="Classification label of the images and their annotations.")
@click.option("--name", default=None, help="Dataset name (default: the folder's name).")
@click.option("--classes", default=None, metavar="A,B,C",
              help="Class names by id (YOLO without data.yaml/classes.txt), or the allowed names (DOTA, COCO).")
@click.option("--gsd", type=float, default=None, help="Ground sample distance in m/px, where the labels do not say.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def dataset_import_cmd(ctx: click.Context, folder: str, fmt: str, label: str, name: str | None,
                       classes: str | None, gsd: float | None, as_json: bool) -> None:
    """Import a labelled folder: images, their annotations and the dataset, all or nothing."""
    from casemate.factory.datasets import import_dataset
    from casemate.security.labels import parse_label

    parse_label(label)
    state = state_of(ctx)
    rep = import_dataset(state.workspace(), state.user(), folder, fmt=fmt, label=label, name=name,
                         classes=_class_list(classes), gsd=gsd)
    if as_json:
        _echo_json(rep.to_json())
        return
    d = rep.to_json()
    what = "unchanged" if rep.unchanged else f"{d['images_new']} new images, {d['annotations_new']} new annotations"
    click.echo(f"{d['dataset']}  {d['label']}  {d['name']}: {d['images']} images, {d['objects']} objects, "
               f"classes {', '.join(d['classes'])} ({what})")


@dataset_group.command("export")
@click.argument("dataset_id")
@click.option("--format", "fmt", required=True, type=click.Choice(["yolo", "yolo-obb", "dota", "coco"]))
@click.option("--out", required=True, type=click.Path(file_okay=False))
@click.option("--class-map", "class_map_file", default=None, type=click.Path(exists=True, dir_okay=False),
              help="YAML/JSON mapping 'source: target' (target empty: drop the class).")
@click.option("--map", "map_pairs", multiple=True, metavar="SRC=DST", help="One class mapping (repeatable).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def dataset_export_cmd(ctx: click.Context, dataset_id: str, fmt: str, out: str, class_map_file: str | None,
                       map_pairs: tuple[str, ...], as_json: bool) -> None:
    """Write a dataset in the layout Ultralytics, CVAT or DOTA tools read."""
    from casemate.factory.datasets import ClassMap, export_dataset

    cmap = ClassMap.parse(class_map_file, map_pairs) if (class_map_file or map_pairs) else None
    state = state_of(ctx)
    res = export_dataset(state.workspace(), state.user(), dataset_id, out, fmt=fmt, class_map=cmap)
    if as_json:
        _echo_json(res)
        return
    click.echo(f"{res['images']} images written to {res['out']} ({fmt}; classes {', '.join(res['classes'])})")
    if res["dropped"]:
        click.echo("dropped (unmapped): " + ", ".join(f"{k} x{n}" for k, n in res["dropped"].items()), err=True)


@dataset_group.command("split")
@click.argument("dataset_id")
@click.option("--holdout", type=float, default=0.2, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def dataset_split_cmd(ctx: click.Context, dataset_id: str, holdout: float, seed: int, as_json: bool) -> None:
    """Split by image into train and holdout datasets (deterministic for a seed)."""
    from casemate.factory.datasets import split_dataset

    state = state_of(ctx)
    tr, ho = split_dataset(state.workspace(), state.user(), dataset_id, holdout=holdout, seed=seed)
    if as_json:
        _echo_json({"train": tr.id, "holdout": ho.id, "train_images": tr.metadata["counts"]["images"],
                    "holdout_images": ho.metadata["counts"]["images"]})
        return
    click.echo(f"train   {tr.id}  {tr.metadata['counts']['images']} images")
    click.echo(f"holdout {ho.id}  {ho.metadata['counts']['images']} images")


@dataset_group.command("ls")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def dataset_ls_cmd(ctx: click.Context, as_json: bool) -> None:
    """Datasets you may read, newest first."""
    from casemate.factory.datasets import list_datasets

    state = state_of(ctx)
    vs = list_datasets(state.workspace(), state.user())
    if as_json:
        _echo_json([{"id": v.id, "name": v.name, "label": format_label(v.label), **v.metadata.get("counts", {}),
                     "classes": v.metadata.get("classes")} for v in vs])
        return
    if not vs:
        click.echo("no datasets")
    for v in vs:
        c = v.metadata.get("counts", {})
        click.echo(f"{v.id}  {format_label(v.label):<16} {c.get('images', '?'):>6} images "
                   f"{c.get('objects', '?'):>7} objects  {v.name}")


@dataset_group.command("show")
@click.argument("dataset_id")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def dataset_show_cmd(ctx: click.Context, dataset_id: str, as_json: bool) -> None:
    """A dataset's classes, counts, label and split."""
    from casemate.factory.datasets import dataset_summary, get_dataset

    state = state_of(ctx)
    v, manifest = get_dataset(state.workspace(), state.user(), dataset_id)
    s = dataset_summary(v, manifest)
    if as_json:
        _echo_json(s)
        return
    for k, val in s.items():
        if val is not None:
            click.echo(f"{k:14s} {val}")


def _fail(msg: str) -> None:
    click.echo(f"error: {msg}", err=True)
    sys.exit(1)
