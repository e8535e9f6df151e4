"""Recipe of the shipped default detector: synthetic scenes -> train (CPU) -> ONNX -> held-out mAP50.

    .venv/bin/python benchmarks/bench_imagery_train.py --work /tmp/imagery-train \
        --install src/casemate/imagery/models/default

Deterministic given the seeds (up to thread scheduling in torch's CPU kernels).
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", default="/tmp/imagery-train")
    ap.add_argument("--n-train", type=int, default=1200)
    ap.add_argument("--n-test", type=int, default=100)
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--minutes", type=float, default=35.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--resume", action="store_true", help="continue from work/model/checkpoint.safetensors")
    ap.add_argument("--install", default=None, help="copy model.onnx + manifest.json here")
    args = ap.parse_args()
    from casemate.imagery.model.train import train
    from casemate.imagery.synth import write_dataset

    work = Path(args.work)
    t0 = time.monotonic()
    if not (work / "train" / "dataset.json").exists():
        write_dataset(work / "train", args.n_train, seed=1)
    if not (work / "test" / "dataset.json").exists():
        write_dataset(work / "test", args.n_test, seed=2)
    print(f"data ready in {time.monotonic() - t0:.0f} s", flush=True)
    res = train([work / "train"], work / "model", epochs=args.epochs, max_minutes=args.minutes,
                threads=args.threads, width=args.width, batch=16, lr=args.lr, seed=0, resume=args.resume,
                progress=lambda r: print(json.dumps(r), flush=True),
                manifest_extra={"name": "casemate-default-obb", "label": "NP"})
    from casemate.imagery.evaluate import evaluate

    ev = evaluate(work / "model", work / "test")
    print(json.dumps({"eval_heldout": ev}, indent=1), flush=True)
    manifest = json.loads((work / "model" / "manifest.json").read_text())
    manifest["eval_heldout_synth"] = {"n_scenes": args.n_test, "seed": 2, "map50": ev["map50"],
                                      "per_class": ev["per_class"], "per_level": ev["per_level"]}
    (work / "model" / "manifest.json").write_text(json.dumps(manifest, indent=2))
    if args.install:
        dst = Path(args.install)
        dst.mkdir(parents=True, exist_ok=True)
        for name in ("model.onnx", "manifest.json"):
            shutil.copy2(work / "model" / name, dst / name)
    print(json.dumps({"minutes_total": round((time.monotonic() - t0) / 60, 1), "steps": res["training"]["steps"]}))


if __name__ == "__main__":
    main()
