"""Figures for docs/imagery.md, made by the code: real held-out KIT AIS scenes with the detections
of the shipped model (and the hand labels), and the precision/recall curve at detection level.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_imagery_figures.py --out docs/img/imagery

Drawing uses Pillow and matplotlib (development tools only; the platform never imports them).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bench_imagery_train import KIT_GSD, KIT_NAMES, kit_root

COLOURS = {"D": (255, 64, 64), "R": (255, 170, 0), "I": (0, 230, 120)}


def draw_scene(image_path: Path, dets: list, gt: list, out: Path, max_width: int = 900) -> dict:
    from PIL import Image, ImageDraw

    from casemate.imagery.datasets import read_rgb

    img = Image.fromarray(read_rgb(image_path))
    draw = ImageDraw.Draw(img)
    for b in gt:  # hand labels: thin white upright boxes
        x0, y0 = b.cx - b.length / 2, b.cy - b.width / 2
        draw.rectangle([x0, y0, x0 + b.length, y0 + b.width], outline=(255, 255, 255), width=1)
    for d in dets:
        pts = [tuple(p) for p in d.corners_px]
        draw.line(pts + [pts[0]], fill=COLOURS[d.dri_level], width=2)
    if img.width > max_width:
        img = img.resize((max_width, round(img.height * max_width / img.width)))
    out.parent.mkdir(parents=True, exist_ok=True)
    img.convert("P", palette=Image.Palette.ADAPTIVE, colors=128).save(out, optimize=True)
    return {"file": str(out), "detections": len(dets), "labels": len(gt)}


def pr_figure(pr: list[dict], ap: float, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pts = [p for p in pr if p["precision"] is not None]
    fig, ax = plt.subplots(figsize=(4.2, 3.4), dpi=110)
    ax.plot([p["recall"] for p in pts], [p["precision"] for p in pts], marker="o", ms=3)
    for p in pts[::4]:
        ax.annotate(f"{p['threshold']:.2f}", (p["recall"], p["precision"]), fontsize=6,
                    textcoords="offset points", xytext=(3, 3))
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_title(f"KIT AIS held out, detection level (AP50 {ap:.3f})", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="default")
    ap.add_argument("--kit", default=None)
    ap.add_argument("--out", default="docs/img/imagery")
    ap.add_argument("--scenes", default="MOS83,MunichStreet02-MOS81",
                    help="held-out images to draw (stems)")
    args = ap.parse_args()
    from casemate.imagery.datasets import holdout_split, load_dataset
    from casemate.imagery.evaluate import evaluate
    from casemate.imagery.pipeline import detect_raster
    from casemate.imagery.runtime import load_detector

    kit = kit_root(args.kit)
    det = load_detector(args.model)
    samples = load_dataset(kit, det.classes, names=KIT_NAMES, gsd=KIT_GSD)
    _, held = holdout_split(samples, holdout=0.2, seed=0)
    out = Path(args.out)
    made = []
    for stem in args.scenes.split(","):
        s = next(x for x in held if x.image_path.stem == stem)
        res = detect_raster(s.image_path, det, gsd=KIT_GSD, workers=1)
        made.append(draw_scene(s.image_path, res.detections, s.boxes, out / f"kit-{stem}.png"))
    ev = evaluate(det, held)
    node = ev["per_level"]["D"]["classes"]["vehicle"]
    pr_figure(node["pr"], node["ap50"], out / "kit-pr.png")
    print(json.dumps({"figures": made, "detection_ap50": ev["detection_ap50"], "pr": node["pr"],
                      "iou_kind": ev["iou_kind"]}, indent=1))


if __name__ == "__main__":
    main()
