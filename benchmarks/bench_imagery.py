"""Imagery pipeline benchmark: end-to-end throughput and peak memory on a large GeoTIFF, the same
ONNX model under SAHI on the same raster (ratio), and seams on a dense synthetic scene.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_imagery.py --size 20000 --cmp-size 4096 --reps 3

The last line (HEADLINE) holds the figures the targets are about: MP/s and peak memory on the big
raster, the speed-up over SAHI running the same ONNX model on the same raster in the same run.

The big raster is written once (tiled GeoTIFF, EPSG:32631, 0.5 m) from synthetic scenes.
Each measured run is a fresh child process, so peak RSS is that run's own.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def make_raster(path: Path, size: int, seed: int = 0) -> None:
    """size x size x 3 uint8 GeoTIFF, pasted from 8 synthetic 1024 px scenes (0.5 m), written by row strips."""
    import rasterio
    from rasterio.transform import from_origin
    from rasterio.windows import Window

    from casemate.imagery.synth import generate_scene

    if path.exists():
        return
    rng = np.random.default_rng(seed)
    scenes = [generate_scene(rng, size=1024, gsd=0.5, density=2.0).image for _ in range(8)]
    tmp = path.with_suffix(".tmp.tif")
    with rasterio.open(tmp, "w", driver="GTiff", width=size, height=size, count=3, dtype="uint8",
                       crs="EPSG:32631", transform=from_origin(400000, 5400000, 0.5, 0.5), tiled=True,
                       blockxsize=512, blockysize=512, BIGTIFF="IF_SAFER") as dst:
        for row in range(0, size, 1024):
            h = min(1024, size - row)
            strip = np.concatenate([scenes[rng.integers(8)] for _ in range((size + 1023) // 1024)], axis=1)
            dst.write(np.moveaxis(strip[:h, :size], 2, 0), window=Window(0, row, size, h))
    os.replace(tmp, path)


CHILD_OURS = """
import json, sys, time, resource
from pathlib import Path
from casemate.imagery.runtime import load_detector
from casemate.imagery.pipeline import detect_raster
from casemate.imagery.export import write_geojson, write_geopackage
t0 = time.perf_counter()
det = load_detector(sys.argv[2])
res = detect_raster(sys.argv[1], det, workers=int(sys.argv[3]), batch=int(sys.argv[5]))
write_geojson(res, Path(sys.argv[4]) / 'out.geojson'); write_geopackage(res, Path(sys.argv[4]) / 'out.gpkg')
dt = time.perf_counter() - t0
ru = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"seconds": dt, "cpu_s": ru.ru_utime + ru.ru_stime, "mp": res.width * res.height / 1e6,
                  "detections": len(res.detections),
                  "tiles": res.stats["tiles"], "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

CHILD_SAHI = """
import json, sys, time, resource
import numpy as np
from sahi.models.base import DetectionModel
from sahi.prediction import ObjectPrediction
from sahi.predict import get_sliced_prediction
from casemate.imagery.runtime import load_detector

class OnnxObb(DetectionModel):
    # The same ONNX detector, one slice at a time, oriented boxes as their axis-aligned envelopes.
    def load_model(self):
        self.model = load_detector(self.model_path)
        self.category_mapping = {str(i): c for i, c in enumerate(self.model.classes)}
    def set_model(self, model, **kw):
        self.model = model
    def perform_inference(self, image):
        self._original_predictions = self.model.detect(np.ascontiguousarray(image[None, :, :, :3]))[0]
    @property
    def num_categories(self):
        return len(self.model.classes)
    @property
    def has_mask(self):
        return False
    @property
    def category_names(self):
        return self.model.classes
    def _create_object_prediction_list_from_original_predictions(self, shift_amount_list=[[0, 0]], full_shape_list=None):
        from casemate.imagery.geometry import obb_corners
        r = self._original_predictions
        shift = shift_amount_list[0] if isinstance(shift_amount_list[0], list) else shift_amount_list
        full = full_shape_list[0] if full_shape_list else None
        preds = []
        c = obb_corners(r.cx, r.cy, r.length, r.width, r.axis)
        for i in range(len(r.score)):
            x0, y0 = c[i].min(axis=0); x1, y1 = c[i].max(axis=0)
            preds.append(ObjectPrediction(bbox=[max(0, x0), max(0, y0), max(x0 + 1, x1), max(y0 + 1, y1)],
                         category_id=int(r.leaf[i]), category_name=self.model.classes[int(r.leaf[i])],
                         score=float(r.score[i]), shift_amount=shift, full_shape=full))
        self._object_prediction_list_per_image = [preds]

t0 = time.perf_counter()
m = OnnxObb(model_path=sys.argv[2], confidence_threshold=0.25, load_at_init=True)
res = get_sliced_prediction(sys.argv[1], m, slice_height=512, slice_width=512, overlap_height_ratio=0.25,
                            overlap_width_ratio=0.25, perform_standard_pred=False, verbose=0)
dt = time.perf_counter() - t0
ru = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"seconds": dt, "cpu_s": ru.ru_utime + ru.ru_stime, "detections": len(res.object_prediction_list),
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def child(code: str, *args: str) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, timeout=3600)
    if out.returncode != 0:
        raise SystemExit(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", default="/tmp/imagery-bench")
    ap.add_argument("--size", type=int, default=20000, help="big raster side (px)")
    ap.add_argument("--cmp-size", type=int, default=4096, help="raster side for the SAHI comparison")
    ap.add_argument("--reps", type=int, default=3, help="repetitions of the SAHI comparison")
    ap.add_argument("--model", default="default")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch", type=int, default=1, help="tiles per ONNX Runtime call")
    ap.add_argument("--skip-big", action="store_true")
    ap.add_argument("--skip-compare", action="store_true")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    report: dict = {"date": time.strftime("%Y-%m-%d"), "cpus": os.cpu_count(), "model": args.model,
                    "load_avg_start": os.getloadavg()}
    # 1. SAHI vs ours on the same GeoTIFF (SAHI reads it whole with PIL), same ONNX model.
    cmp_tif = work / f"cmp_{args.cmp_size}.tif"
    make_raster(cmp_tif, args.cmp_size, seed=1)
    ours1, ours2, sahi = [], [], []
    for _ in range(0 if args.skip_compare else args.reps):
        ours1.append(child(CHILD_OURS, str(cmp_tif), args.model, "1", str(work), str(args.batch)))
        ours2.append(child(CHILD_OURS, str(cmp_tif), args.model, str(args.workers), str(work), str(args.batch)))
        sahi.append(child(CHILD_SAHI, str(cmp_tif), args.model))
    med = lambda rs, k: statistics.median(r[k] for r in rs)  # noqa: E731
    mp = args.cmp_size**2 / 1e6
    report["compare"] = {} if args.skip_compare else {
        "raster_mp": mp, "reps": args.reps,
        "ours_1worker_s": med(ours1, "seconds"), "ours_s": med(ours2, "seconds"), "sahi_s": med(sahi, "seconds"),
        "ours_mp_per_s": mp / med(ours2, "seconds"), "sahi_mp_per_s": mp / med(sahi, "seconds"),
        "speedup_vs_sahi": med(sahi, "seconds") / med(ours2, "seconds"),
        "speedup_vs_sahi_same_threads": med(sahi, "seconds") / med(ours1, "seconds"),
        "ours_cpu_s": med(ours2, "cpu_s"), "sahi_cpu_s": med(sahi, "cpu_s"),
        "ours_peak_rss_mib": med(ours2, "peak_rss_mib"), "sahi_peak_rss_mib": med(sahi, "peak_rss_mib"),
        "ours_detections": ours2[0]["detections"], "sahi_detections": sahi[0]["detections"],
    }
    print(json.dumps(report["compare"], indent=1), flush=True)
    # 2. The big raster, end to end.
    if not args.skip_big:
        big = work / f"big_{args.size}.tif"
        t0 = time.perf_counter()
        make_raster(big, args.size)
        report["big_write_s"] = round(time.perf_counter() - t0, 1)
        r = child(CHILD_OURS, str(big), args.model, str(args.workers), str(work), str(args.batch))
        r["mp_per_s"] = r["mp"] / r["seconds"]
        r["mp_per_cpu_s"] = r["mp"] / r["cpu_s"]  # what contention does not change much
        report["big"] = r
        print(json.dumps(r, indent=1), flush=True)
    # 3. Seams on a dense synthetic scene (simulated tile detector, merge logic under test).
    sys.path.insert(0, str(ROOT / "tests"))
    from imagery.test_merge import seam_once_rate

    rates = [seam_once_rate(seed=s, size=2048, n=900) for s in range(5)]
    report["seams"] = {"scenes": 5, "objects_on_seams": sum(r[1] for r in rates),
                       "reported_once": sum(round(r[0] * r[1]) for r in rates) / sum(r[1] for r in rates)}
    report["load_avg_end"] = os.getloadavg()
    report["self_peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(report["seams"]), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    # The headline, one line: what the targets are about.
    big_r, cmp_r = report.get("big"), report["compare"]
    print("HEADLINE " + "; ".join(filter(None, [
        big_r and (f"{args.size} px: {big_r['mp_per_s']:.2f} MP/s (target >= 2), peak {big_r['peak_rss_mib']:.0f} MiB "
                   f"(target <= 512), {big_r['seconds']:.0f} s wall, {big_r['cpu_s']:.0f} s CPU, "
                   f"{big_r['detections']} detections"),
        cmp_r and (f"vs SAHI on {args.cmp_size} px: {cmp_r['speedup_vs_sahi']:.2f}x faster "
                   f"({cmp_r['ours_s']:.1f} s vs {cmp_r['sahi_s']:.1f} s, medians of {cmp_r['reps']})"),
        f"load {report['load_avg_start'][0]:.1f} -> {report['load_avg_end'][0]:.1f}"])), flush=True)


if __name__ == "__main__":
    main()
