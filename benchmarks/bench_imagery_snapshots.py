"""Held-out accuracy of training snapshots (and shipped models), to choose which one ships.

    nice -n 19 .venv/bin/python benchmarks/bench_imagery_snapshots.py --work /tmp/imtrain \
        [--models default synthetic-v1] [--every 2] [--json /tmp/imtrain/snapshots.json]

Each snapshot (work/model/snapshots/step-N.safetensors, kept by `train(snapshot_every=N)`) is
exported to ONNX beside it with the shipped default's manifest keys (GSD range, DRI settings), then
scored on the held-out KIT AIS images (AP50 at detection level, envelope IoU) and on the held-out
procedural scenes (mAP50 over the seven leaves, oriented IoU). Prints one JSON line per model.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_imagery_train import KIT_GSD, KIT_NAMES, KIT_TRAIN_MAP, kit_root  # noqa: E402


def export_snapshot(ckpt: Path, like: Path, width: int = 16) -> Path:
    """ckpt -> ckpt's folder/<stem>/model.onnx + manifest.json, with `like`'s manifest keys."""
    from safetensors.torch import load_file

    from casemate.imagery.dri import DEFAULT_CLASSES
    from casemate.imagery.model.export import export_onnx
    from casemate.imagery.model.net import OrientedCenterNet

    out = ckpt.parent / ckpt.stem
    if (out / "manifest.json").exists():
        return out
    manifest = json.loads((like / "manifest.json").read_text())
    keep = {k: v for k, v in manifest.items()
            if k not in ("format", "adapter", "onnx", "sha256", "classes", "input_size", "stride", "width")
            and not k.startswith("eval_")}
    keep["training"] = {**keep.get("training", {}), "snapshot": ckpt.name}
    net = OrientedCenterNet(len(DEFAULT_CLASSES), width=width)
    net.load_state_dict(load_file(str(ckpt)))
    export_onnx(net, out, classes=list(DEFAULT_CLASSES), manifest_extra=keep)
    return out


def soup(model_a: Path, model_b: Path, alpha: float, out: Path) -> Path:
    """Weight interpolation (1 - alpha) * A + alpha * B of two exports of the same architecture,
    convolution by convolution in graph order (both are fused Conv+bias graphs): a fine-tuned model
    pulled back toward the model it started from (WiSE-FT, Wortsman et al. 2022)."""
    import hashlib

    import onnx
    from onnx import numpy_helper

    from casemate.imagery.runtime import resolve_model

    (oa, ma), (ob, _) = resolve_model(str(model_a)), resolve_model(str(model_b))
    ga, gb = onnx.load(str(oa)), onnx.load(str(ob))
    ia = {i.name: i for i in ga.graph.initializer}
    ib = {i.name: numpy_helper.to_array(i) for i in gb.graph.initializer}
    ca = [n for n in ga.graph.node if n.op_type == "Conv"]
    cb = [n for n in gb.graph.node if n.op_type == "Conv"]
    if len(ca) != len(cb):
        raise SystemExit(f"{model_a} and {model_b}: not the same architecture")
    for na, nb in zip(ca, cb, strict=True):
        for xa, xb in zip(na.input[1:], nb.input[1:], strict=True):
            wa = numpy_helper.to_array(ia[xa])
            mixed = ((1 - alpha) * wa + alpha * ib[xb]).astype(wa.dtype)
            ia[xa].CopyFrom(numpy_helper.from_array(mixed, xa))
    out.mkdir(parents=True, exist_ok=True)
    onnx.save(ga, str(out / "model.onnx"))
    manifest = json.loads(Path(ma).read_text())
    manifest = {k: v for k, v in manifest.items() if not k.startswith("eval_")}
    manifest["sha256"] = hashlib.sha256((out / "model.onnx").read_bytes()).hexdigest()
    manifest["training"] = {**manifest.get("training", {}),
                            "soup": {"of": [str(model_a), str(model_b)], "alpha": alpha}}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return out


def score(model: Path | str, kit: Path, held: set[str], synth: Path, limit: int | None = None) -> dict:
    from casemate.imagery.evaluate import evaluate

    t0 = time.monotonic()
    real = evaluate(model, kit, names=KIT_NAMES, gsd=KIT_GSD, images=held)
    syn = evaluate(model, synth, limit=limit)
    return {"model": str(model), "kit_ap50": real["detection_ap50"], "synth_map50": syn["map50"],
            "synth_per_class": {k.split("/")[-1]: v["ap50"] for k, v in syn["per_class"].items()},
            "kit_pr": real["per_level"]["D"]["classes"], "eval_s": round(time.monotonic() - t0)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", default="/tmp/imagery-train")
    ap.add_argument("--kit", default=None)
    ap.add_argument("--models", nargs="*", default=[], help="also score these models (names or folders)")
    ap.add_argument("--every", type=int, default=1, help="score every k-th snapshot only")
    ap.add_argument("--last", type=int, default=0, help="only the last N snapshots (after --every)")
    ap.add_argument("--limit", type=int, default=None, help="procedural scenes scored (default all)")
    ap.add_argument("--soup", nargs=2, default=None, metavar=("A", "B"),
                    help="also score weight interpolations of models A and B (see --alphas)")
    ap.add_argument("--alphas", default="0.25,0.5", help="weights of B in the soups")
    ap.add_argument("--json", default=None, help="append results to this JSON-lines file")
    args = ap.parse_args()
    from casemate.imagery.datasets import holdout_split, load_dataset
    from casemate.imagery.dri import DEFAULT_CLASSES
    from casemate.imagery.runtime import resolve_model

    work = Path(args.work)
    kit = kit_root(args.kit)
    train_map = {**{"bus": "vehicle", "truck": "vehicle/truck"}, **KIT_TRAIN_MAP}
    _, kit_test = holdout_split(load_dataset(kit, DEFAULT_CLASSES, names=KIT_NAMES, gsd=KIT_GSD,
                                             class_map=train_map), holdout=0.2, seed=0)
    held = {s.image_path.stem for s in kit_test}
    like = resolve_model("default")[1].parent
    snaps = sorted((work / "model" / "snapshots").glob("step-*.safetensors"))[:: args.every]
    if args.last:
        snaps = snaps[-args.last:]
    targets: list[Path | str] = list(args.models) + [export_snapshot(s, like) for s in snaps]
    if args.soup:
        a, b = args.soup
        for alpha in (float(x) for x in args.alphas.split(",")):
            targets.append(soup(Path(a), Path(b), alpha, work / "soups" / f"{Path(a).name}-{Path(b).name}-{alpha:g}"))
    for m in targets:
        rec = score(m, kit, held, work / "test", args.limit)
        line = json.dumps({k: v for k, v in rec.items() if k != "kit_pr"})
        print(line, flush=True)
        if args.json:
            with open(args.json, "a") as fh:
                fh.write(json.dumps(rec) + "\n")


if __name__ == "__main__":
    main()
