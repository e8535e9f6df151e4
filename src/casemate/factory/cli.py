"""CLI faces of the model factory: `dataset`, `jobs`, `train`, `models`, `check-labels`.

Thin: each command parses, calls the library in casemate.factory, prints.
"""

from __future__ import annotations

import json
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


# -- jobs ----------------------------------------------------------------------------------------
@click.group("jobs")
def jobs_group() -> None:
    """Training and evaluation jobs: ls, show, logs, cancel."""


def _job_line(j: Any) -> str:
    return (f"{j.id}  {j.state:<9} {int(j.progress * 100):>3}%  {format_label(j.label):<12} {j.executor:<5} "
            f"{j.kind:<15} {j.submitted_by:<8} {j.created_at[:19]}")


@jobs_group.command("ls")
@click.option("--state", default=None, type=click.Choice(["queued", "running", "completed", "failed", "cancelled"]))
@click.option("--limit", "-n", default=50, show_default=True, type=click.IntRange(1, 1000))
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def jobs_ls_cmd(ctx: click.Context, state: str | None, limit: int, as_json: bool) -> None:
    """Jobs you may read (their label), newest first; states checked against the scheduler."""
    from casemate.factory.executors import reconcile
    from casemate.factory.jobs import JobStore

    st = state_of(ctx)
    ws = st.workspace()
    jobs = [reconcile(ws, j) for j in JobStore(ws).list(st.user(), state=state, limit=limit)]
    if as_json:
        _echo_json([j.to_json() for j in jobs])
        return
    if not jobs:
        click.echo("no jobs")
    for j in jobs:
        click.echo(_job_line(j))


@jobs_group.command("show")
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def jobs_show_cmd(ctx: click.Context, job_id: str, as_json: bool) -> None:
    """A job's state, spec and result."""
    from casemate.factory.executors import reconcile
    from casemate.factory.jobs import JobStore

    st = state_of(ctx)
    ws = st.workspace()
    j = reconcile(ws, JobStore(ws).get(st.user(), job_id))
    if as_json:
        _echo_json(j.to_json())
        return
    for k, v in j.to_json().items():
        if v is not None:
            click.echo(f"{k:13s} {json.dumps(v) if isinstance(v, dict | list) else v}")


@jobs_group.command("logs")
@click.argument("job_id")
@click.option("--follow", "-f", is_flag=True, help="Keep printing until the job ends.")
@click.pass_context
def jobs_logs_cmd(ctx: click.Context, job_id: str, follow: bool) -> None:
    """A job's log (what its process reported)."""
    import time

    from casemate.factory.executors import reconcile
    from casemate.factory.jobs import TERMINAL, JobStore

    st = state_of(ctx)
    ws = st.workspace()
    store = JobStore(ws)
    shown = 0
    while True:
        j = reconcile(ws, store.get(st.user(), job_id))
        click.echo(j.log[shown:], nl=False)
        shown = len(j.log)
        if not follow or j.state in TERMINAL:
            break
        time.sleep(1.0)


@jobs_group.command("cancel")
@click.argument("job_id")
@click.pass_context
def jobs_cancel_cmd(ctx: click.Context, job_id: str) -> None:
    """Cancel a queued or running job (its submitter or an admin)."""
    from casemate.factory.service import cancel_job

    st = state_of(ctx)
    j = cancel_job(st.workspace(), st.user(), job_id)
    click.echo(f"{j.id} {j.state}")


# -- train ---------------------------------------------------------------------------------------
@click.group("train")
def train_group() -> None:
    """Submit a training job: detector, label-advisor."""


@train_group.command("detector")
@click.option("--dataset", required=True, metavar="ID", help="Training dataset (see `casemate dataset ls`).")
@click.option("--base", default=None, metavar="MODEL", help="Fine-tune from this registered model (id or alias).")
@click.option("--holdout", default=None, metavar="ID", help="Dataset scored after training (an evaluation version).")
@click.option("--executor", default=None, type=click.Choice(["local", "slurm"]),
              help="Where it runs (default: the workspace's factory.executor, else local).")
@click.option("--partition", default=None)
@click.option("--gpus", default=None, type=click.IntRange(0, 64))
@click.option("--time", "time_limit", default=None, metavar="HH:MM:SS", help="Slurm time limit.")
@click.option("--minutes", default=None, type=float, help="Stop training (annealed) after this long.")
@click.option("--epochs", default=None, type=click.IntRange(1, 100_000))
@click.option("--batch", default=None, type=click.IntRange(1, 1024))
@click.option("--width", default=None, type=click.IntRange(4, 256))
@click.option("--crop", default=None, type=click.IntRange(32, 4096))
@click.option("--tile", default=None, type=click.IntRange(64, 4096))
@click.option("--lr", default=None, type=float)
@click.option("--seed", default=None, type=int)
@click.option("--threads", default=None, type=click.IntRange(1, 256))
@click.option("--classes", default=None, metavar="A,B", help="The model's taxonomy (default: the base's, else imagery's).")
@click.option("--class-map", "class_map_file", default=None, type=click.Path(exists=True, dir_okay=False))
@click.option("--map", "map_pairs", multiple=True, metavar="SRC=DST")
@click.option("--name", default=None)
@click.option("--wait", is_flag=True, help="Wait for the job to end and print its result.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def train_detector_cmd(ctx: click.Context, dataset: str, base: str | None, holdout: str | None, executor: str | None,
                       partition: str | None, gpus: int | None, time_limit: str | None, minutes: float | None,
                       epochs: int | None, batch: int | None, width: int | None, crop: int | None, tile: int | None,
                       lr: float | None, seed: int | None, threads: int | None, classes: str | None,
                       class_map_file: str | None, map_pairs: tuple[str, ...], name: str | None, wait: bool,
                       as_json: bool) -> None:
    """Train the detector on a catalog dataset as a job; the model is registered and signed."""
    from casemate.factory.datasets import ClassMap
    from casemate.factory.settings import factory_settings
    from casemate.factory.submit import submit_training

    st = state_of(ctx)
    ws = st.workspace()
    cmap = ClassMap.parse(class_map_file, map_pairs).mapping if (class_map_file or map_pairs) else None
    job = submit_training(ws, st.user(), dataset=dataset, executor=executor or factory_settings(ws).executor,
                          base=base, holdout=holdout, class_map=cmap, classes=_class_list(classes),
                          partition=partition, gpus=gpus, time=time_limit, name=name, minutes=minutes,
                          epochs=epochs, batch=batch, width=width, crop=crop, tile=tile, lr=lr, seed=seed,
                          threads=threads)
    if wait:
        from casemate.factory.service import wait_job

        job = wait_job(ws, st.user(), job.id)
    if as_json:
        _echo_json(job.to_json())
    else:
        click.echo(f"{job.id} {job.state}" + (f" {json.dumps(job.result)}" if job.result else ""))
    if wait and job.state != "completed":
        ctx.exit(1)


# -- models --------------------------------------------------------------------------------------
@click.group("models")
def models_group() -> None:
    """The model registry: ls, show, eval, promote, rollback."""


@models_group.command("ls")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def models_ls_cmd(ctx: click.Context, as_json: bool) -> None:
    """Registered models you may read, with their aliases."""
    from casemate.factory.registry import list_models

    st = state_of(ctx)
    rows = list_models(st.workspace(), st.user())
    if as_json:
        _echo_json([{"id": v.id, "name": v.name, "label": format_label(v.label), "aliases": a,
                     "created_at": v.created_at, "metrics": v.metadata["registry"].get("metrics"),
                     "dataset": v.metadata["registry"]["inputs"][0]["id"]} for v, a in rows])
        return
    if not rows:
        click.echo("no registered models")
    for v, a in rows:
        click.echo(f"{v.id}  {format_label(v.label):<12} {v.created_at[:19]}  {v.name}"
                   + (f"  [{', '.join(a)}]" if a else ""))


@models_group.command("show")
@click.argument("model")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def models_show_cmd(ctx: click.Context, model: str, as_json: bool) -> None:
    """A model's signed manifest (verified: signature, blob and every file)."""
    from casemate.factory.registry import load_model

    st = state_of(ctx)
    m = load_model(st.workspace(), st.user(), model)
    out = {"id": m.version.id, "label": format_label(m.version.label), "folder": str(m.folder), "verified": True,
           "parents": list(m.version.parents), **m.manifest}
    if as_json:
        _echo_json(out)
        return
    for k, v in out.items():
        if k == "inputs":
            v = [{kk: vv for kk, vv in i.items() if kk != "items"} | {"items": len(i.get("items", []))} for i in v]
        click.echo(f"{k:12s} {json.dumps(v) if isinstance(v, dict | list) else v}")


@models_group.command("eval")
@click.argument("model")
@click.option("--dataset", required=True, metavar="ID")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def models_eval_cmd(ctx: click.Context, model: str, dataset: str, as_json: bool) -> None:
    """Score a model on a dataset; stores an evaluation version derived from both."""
    from casemate.factory.registry import evaluate_model

    st = state_of(ctx)
    ev = evaluate_model(st.workspace(), st.user(), model, dataset)
    if as_json:
        _echo_json(ev.to_json())
        return
    click.echo(f"{ev.id}  {format_label(ev.label)}  mAP50 {ev.metadata['map50']:.4f}  "
               f"(model {ev.metadata['model']}, dataset {ev.metadata['dataset']})")


@models_group.command("promote")
@click.argument("model")
@click.option("--alias", default="production", show_default=True)
@click.option("--gate", default=None, metavar="DATASET", help="Dataset both models are scored on.")
@click.option("--min-gain", default=0.0, show_default=True, type=float, help="mAP50 the new model must gain.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def models_promote_cmd(ctx: click.Context, model: str, alias: str, gate: str | None, min_gain: float,
                       as_json: bool) -> None:
    """Point an alias at a model, only if it beats the current holder on the gate (officers, admins)."""
    from casemate.factory.registry import promote

    st = state_of(ctx)
    res = promote(st.workspace(), st.user(), model, alias=alias, gate=gate, min_gain=min_gain)
    if as_json:
        _echo_json(res)
        return
    click.echo(f"{alias} -> {res['model']}" + (f" (was {res['previous']}" + (f", gain {res['gain']:+.4f}" if
               "gain" in res else "") + ")" if res["previous"] else ""))


@models_group.command("rollback")
@click.option("--alias", default="production", show_default=True)
@click.pass_context
def models_rollback_cmd(ctx: click.Context, alias: str) -> None:
    """Point an alias back at the model it named before its last promotion."""
    from casemate.factory.registry import rollback

    st = state_of(ctx)
    res = rollback(st.workspace(), st.user(), alias)
    click.echo(f"{alias} -> {res['model'] or '(unset)'} (was {res['previous']})")


@train_group.command("label-advisor")
@click.option("--executor", default=None, type=click.Choice(["local", "slurm"]))
@click.option("--kind", default="document", show_default=True, help="Catalog kind to learn from.")
@click.option("--holdout", default=0.2, show_default=True, type=float)
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--wait", is_flag=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def train_advisor_cmd(ctx: click.Context, executor: str | None, kind: str, holdout: float, seed: int, wait: bool,
                      as_json: bool) -> None:
    """Learn, from the labelled documents you may read, to predict a document's level."""
    from casemate.factory.settings import factory_settings
    from casemate.factory.submit import submit_advisor_training

    st = state_of(ctx)
    ws = st.workspace()
    job = submit_advisor_training(ws, st.user(), executor=executor or factory_settings(ws).executor, kind=kind,
                                  holdout=holdout, seed=seed)
    if wait:
        from casemate.factory.service import wait_job

        job = wait_job(ws, st.user(), job.id)
    if as_json:
        _echo_json(job.to_json())
    else:
        click.echo(f"{job.id} {job.state}" + (f" {json.dumps(job.result)}" if job.result else ""))
    if wait and job.state != "completed":
        ctx.exit(1)


@click.command("check-labels")
@click.option("--kind", default="document", show_default=True)
@click.option("--model", default="label-advisor", show_default=True, help="Advisor model id or alias (default: newest).")
@click.option("--threshold", default=0.5, show_default=True, type=click.FloatRange(0, 1))
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def check_labels_cmd(ctx: click.Context, kind: str, model: str, threshold: float, as_json: bool) -> None:
    """Flag versions whose text looks more sensitive than their label (score: P(higher level))."""
    from casemate.factory.advisor import check_labels

    st = state_of(ctx)
    flags = check_labels(st.workspace(), st.user(), model=model, kind=kind, threshold=threshold)
    if as_json:
        _echo_json([f.to_json() for f in flags])
        return
    if not flags:
        click.echo("no version looks under-labelled")
    for f in flags:
        click.echo(f"{f.id}  labelled {f.label:<8} looks {f.predicted:<3} score {f.score:.2f}  {f.name}")
