"""Recipe of the shipped default detector: real KIT AIS cars (held-out split by source tile) plus
procedural scenes (ships, aircraft, trucks) -> train (CPU) -> ONNX -> held-out AP50 on both.

    nice -n 10 .venv/bin/python benchmarks/bench_imagery_train.py --work /tmp/imagery-train \
        --minutes 40 --threads 2 --install src/casemate/imagery/models/default

Deterministic given the seeds (up to thread scheduling in torch's CPU kernels). The split is the
one `casemate.imagery.datasets.holdout_split` makes (20 % of the source tiles, seed 0); its
held-out images are recorded in the manifest.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KIT = ROOT.parent / "shared" / "data" / "imagery" / "kit-ais-cars"
# KIT AIS's class ids (its README): the source's list.
KIT_NAMES = ["car", "truck", "bus", "minibus", "cyclist"]
KIT_GSD = 0.13  # metres per pixel (README: about 0.13 m)
# Training leaves for KIT's names: a minibus trains as a car, a bus as a box-shaped truck.
KIT_TRAIN_MAP = {"car": "vehicle/car/sedan", "minibus": "vehicle/car/sedan", "bus": "vehicle/truck/box_truck"}


def kit_root(arg: str | None) -> Path:
    for cand in ([Path(arg)] if arg else []) + [KIT, Path("/work/shared/data/imagery/kit-ais-cars")]:
        if cand.is_dir():
            return cand
    raise SystemExit(f"KIT AIS cars not found (tried {KIT}); give --kit DIR")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", default="/tmp/imagery-train")
    ap.add_argument("--kit", default=None)
    ap.add_argument("--n-train", type=int, default=800)
    ap.add_argument("--n-test", type=int, default=100)
    ap.add_argument("--epochs", type=int, default=10_000)
    ap.add_argument("--minutes", type=float, default=40.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--real-weight", type=float, default=0.75, help="share of each batch drawn from KIT")
    ap.add_argument("--kit-scales", default="1.8,2.2,2.6",
                    help="KIT images are shown shrunk by these factors (0.13 m -> 0.23-0.34 m): cars come "
                         "closer to the procedural scenes' scale and each crop holds more of them")
    ap.add_argument("--init", default="default", help="warm start: a model folder/name of the same width, or 'none'")
    ap.add_argument("--balance", type=float, default=0.0,
                    help="procedural scenes drawn by the inverse frequency of their rarest class, to this power")
    ap.add_argument("--bn", default="frozen", choices=["frozen", "recalibrate"],
                    help="after a warm start: BN held at the fused identity, or recalibrated and trained")
    ap.add_argument("--snapshot-every", type=int, default=0, help="keep work/model/snapshots/step-N every N steps")
    ap.add_argument("--skip-eval", action="store_true", help="train and export only (evaluate snapshots later)")
    ap.add_argument("--resume", action="store_true", help="continue from work/model/checkpoint.safetensors")
    ap.add_argument("--install", default=None, help="copy model.onnx + manifest.json here")
    args = ap.parse_args()
    from casemate.imagery.datasets import holdout_split, load_dataset
    from casemate.imagery.dri import DEFAULT_CLASSES
    from casemate.imagery.evaluate import evaluate
    from casemate.imagery.model.train import TrainSet, train
    from casemate.imagery.runtime import resolve_model
    from casemate.imagery.synth import write_dataset

    work = Path(args.work)
    t0 = time.monotonic()
    if not (work / "train" / "dataset.json").exists():
        write_dataset(work / "train", args.n_train, seed=1)
    if not (work / "test" / "dataset.json").exists():
        write_dataset(work / "test", args.n_test, seed=2)
    kit = kit_root(args.kit)
    train_map = {**{"bus": "vehicle", "truck": "vehicle/truck"}, **KIT_TRAIN_MAP}
    kit_all = load_dataset(kit, DEFAULT_CLASSES, names=KIT_NAMES, gsd=KIT_GSD, class_map=train_map)
    kit_train, kit_test = holdout_split(kit_all, holdout=0.2, seed=0)
    held = sorted(s.image_path.stem for s in kit_test)
    print(f"data ready in {time.monotonic() - t0:.0f} s; KIT train {len(kit_train)} images "
          f"({sum(len(s.boxes) for s in kit_train)} boxes), held out {len(kit_test)} "
          f"({sum(len(s.boxes) for s in kit_test)} boxes)", flush=True)
    init = None if args.init == "none" else resolve_model(args.init)[0]
    scales = tuple(float(v) for v in args.kit_scales.split(","))
    res = train([TrainSet(kit_train, weight=args.real_weight, scales=scales),
                 TrainSet(work / "train", weight=1.0 - args.real_weight, balance=args.balance)],
                work / "model", epochs=args.epochs, max_minutes=args.minutes, threads=args.threads,
                width=args.width, batch=args.batch, lr=args.lr, seed=0, resume=args.resume, init_onnx=init,
                bn=args.bn, snapshot_every=args.snapshot_every, progress=lambda r: print(json.dumps(r), flush=True),
                manifest_extra={"name": "casemate-default-obb", "label": "NP",
                                "data_credit": "KIT AIS Data Set, IPF, Karlsruhe Institute of Technology "
                                               "(CC BY 3.0); procedural scenes (casemate.imagery.synth)"})
    if args.skip_eval:
        print(json.dumps({"minutes_total": round((time.monotonic() - t0) / 60, 1), "steps": res["training"]["steps"]}))
        return
    t_eval = time.monotonic()
    ev_real = evaluate(work / "model", kit, names=KIT_NAMES, gsd=KIT_GSD, images=set(held))
    ev_synth = evaluate(work / "model", work / "test")
    print(json.dumps({"real": {k: ev_real[k] for k in ("detection_ap50", "iou_kind", "images")},
                      "synth_map50": ev_synth["map50"],
                      "synth_per_class": {k: v["ap50"] for k, v in ev_synth["per_class"].items()},
                      "eval_s": round(time.monotonic() - t_eval)}), flush=True)
    manifest = json.loads((work / "model" / "manifest.json").read_text())
    manifest["eval_heldout_real"] = {
        "data": "KIT AIS cars (kit-ais-cars)", "split": {"by": "source tile (datasets.split_key)", "holdout": 0.2,
                                                        "seed": 0, "held_out_images": held},
        "gsd_m": KIT_GSD, "iou": ev_real["iou_kind"], "detection_ap50": ev_real["detection_ap50"],
        "per_level": ev_real["per_level"]}
    manifest["eval_heldout_synth"] = {"n_scenes": args.n_test, "seed": 2, "map50": ev_synth["map50"],
                                      "per_class": ev_synth["per_class"],
                                      "per_level": {k: v["map50"] for k, v in ev_synth["per_level"].items()}}
    from casemate.fileutil import write_atomic

    write_atomic(work / "model" / "manifest.json", json.dumps(manifest, indent=2))
    if args.install:
        dst = Path(args.install)
        dst.mkdir(parents=True, exist_ok=True)
        for name in ("model.onnx", "manifest.json"):
            shutil.copy2(work / "model" / name, dst / name)
    print(json.dumps({"minutes_total": round((time.monotonic() - t0) / 60, 1), "steps": res["training"]["steps"]}))


if __name__ == "__main__":
    main()
