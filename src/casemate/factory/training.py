"""Training jobs for the detector: submission (validated before anything runs) and the payload.

The payload runs as the submitting user: it reads the dataset (and base model) through the
catalog, writes the dataset out for imagery's trainer (hard links to the blobs), calls
`casemate.imagery.model.train.train`, and registers the result in the registry with a label at
least the least upper bound of its inputs'. Each epoch's checkpoint and the epochs done are kept
in the job's folder, so a requeued job resumes instead of starting again.
"""

from __future__ import annotations

import inspect
import json
import re
import shutil
from typing import TYPE_CHECKING, Any

from casemate.errors import UsageError
from casemate.factory.jobs import Job, Reporter
from casemate.security.labels import format_label
from casemate.security.policy import User

if TYPE_CHECKING:
    from casemate.workspace import Workspace

DEFAULTS: dict[str, Any] = {"epochs": 30, "minutes": None, "batch": 16, "width": 16, "lr": 3e-3, "crop": 256,
                            "seed": 0, "threads": 1, "tile": 512}


def parse_time(value: str | None) -> int | None:
    """Slurm's HH:MM:SS (or MM, or D-HH:MM:SS) -> whole minutes."""
    if value is None:
        return None
    m = re.fullmatch(r"(?:(\d+)-)?(?:(\d+):)?(\d+)(?::(\d+))?", value.strip())
    if not m:
        raise UsageError(f"--time {value!r}: write HH:MM:SS (e.g. 02:00:00)")
    d, a, b, c = (int(x) if x else 0 for x in m.groups())
    if m.group(4) is not None:  # [D-]HH:MM:SS or MM:SS
        h, mi, s = (a, b, c) if m.group(2) else (0, b, c)
    elif m.group(2) is not None:
        h, mi, s = a, b, 0
    else:
        h, mi, s = 0, b, 0
    return max(1, d * 1440 + h * 60 + mi + (1 if s else 0))


def _call_train(train_fn: Any, **kwargs: Any) -> dict[str, Any]:
    """imagery's trainer with the arguments it takes (its signature grows; extras are dropped)."""
    accepted = inspect.signature(train_fn).parameters
    return train_fn(**{k: v for k, v in kwargs.items() if k in accepted})


def train_detector(ws: Workspace, user: User, job: Job, rep: Reporter) -> dict[str, Any]:
    from casemate.factory.datasets import ClassMap, export_dataset, get_dataset
    from casemate.factory.registry import evaluate_model, load_model, register_model
    from casemate.factory.taxonomy import default_class_map

    try:
        from casemate.imagery.model.train import train
    except ModuleNotFoundError as exc:
        raise UsageError(f"training needs torch ({exc.name} missing): pip install 'casemate[train]'") from None
    spec, p = job.spec, job.spec["params"]
    ds, manifest = get_dataset(ws, user, spec["dataset"])
    base = load_model(ws, user, spec["base"]) if spec.get("base") else None
    if spec.get("classes"):
        taxonomy = list(spec["classes"])
    elif base is not None:
        taxonomy = base.taxonomy
    else:
        from casemate.imagery.dri import DEFAULT_CLASSES

        taxonomy = list(DEFAULT_CLASSES)
    cmap = default_class_map(manifest["classes"], taxonomy, ClassMap(spec.get("class_map") or {}))
    work = ws.home / "jobs" / job.id
    data = work / "data"
    if not (work / "data.complete").exists():
        shutil.rmtree(data, ignore_errors=True)
        exp = export_dataset(ws, user, ds.id, data, fmt="dota", class_map=cmap, taxonomy=taxonomy, link=True)
        (work / "data.complete").write_text(json.dumps(exp["dropped"]))
        rep.log(f"dataset {ds.id}: {exp['images']} images written for training"
                + (f"; dropped (no class in the taxonomy): {exp['dropped']}" if exp["dropped"] else ""))
    out = work / "model"
    state_file = work / "train_state.json"
    done = json.loads(state_file.read_text())["epochs_done"] if state_file.exists() else 0
    resume = (out / "checkpoint.safetensors").exists()
    if resume:
        rep.log(f"resuming from the checkpoint after epoch {done}")
    elif base is not None:
        ckpt = base.folder / "checkpoint.safetensors"
        if not ckpt.is_file():
            raise UsageError(f"base model {base.version.id} has no checkpoint to fine-tune from")
        out.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ckpt, out / "checkpoint.safetensors")
        resume = True
        rep.log(f"fine-tuning from base model {base.version.id}")
    epochs = int(p["epochs"])
    left = max(epochs - done, 0)

    def progress(rec: dict[str, Any]) -> None:
        nonlocal done
        done += 1
        state_file.write_text(json.dumps({"epochs_done": done}))
        rep.log(f"epoch {done}/{epochs}: loss {rec.get('loss', float('nan')):.4f}", progress=0.95 * done / epochs)

    exported = (out / "manifest.json").is_file() and (out / "model.onnx").is_file()
    if left > 0 or not exported:
        # Zero epochs left but no export yet (stopped between the last epoch and the export):
        # the trainer then only loads the checkpoint and exports it.
        res = _call_train(train, data=[data], out=out, classes=tuple(taxonomy), width=int(p["width"]), epochs=left,
                          max_minutes=p.get("minutes"), batch=int(p["batch"]), crop=int(p["crop"]),
                          lr=float(p["lr"]), seed=int(p["seed"]) + done, threads=int(p["threads"]), resume=resume,
                          progress=progress, tile=int(p["tile"]),
                          manifest_extra={"name": spec["name"], "label": format_label(job.label)})
    else:
        res = {"training": json.loads((out / "manifest.json").read_text()).get("training", {})}
    for junk in out.glob("*.tmp"):
        junk.unlink()
    training = {**res.get("training", {}), "params": p, "class_map": cmap.mapping, "data": ds.id,
                "epochs_total": epochs, "attempt_resumed_at_epoch": done - left if resume else 0}
    metrics: dict[str, Any] = {"final_loss": training.get("final_loss")}
    v = register_model(ws, user, out, dataset=ds, dataset_manifest=manifest, base=base.version if base else None,
                       training=training, metrics=metrics, job_id=job.id)
    rep.log(f"model {v.id} registered ({v.name})", progress=0.97)
    result: dict[str, Any] = {"model": v.id, "metrics": metrics}
    if spec.get("holdout"):
        ev = evaluate_model(ws, user, v.id, spec["holdout"])
        result["evaluation"] = ev.id
        result["metrics"] = {**metrics, "holdout_map50": ev.metadata["map50"]}
        rep.log(f"holdout {spec['holdout']}: mAP50 {ev.metadata['map50']:.4f} (evaluation {ev.id})")
    return result
