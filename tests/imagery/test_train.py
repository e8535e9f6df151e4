"""Training on synthetic scenes reaches a stated mAP50 on held-out synthetic scenes in bounded CPU
time; the exported ONNX runs without torch; external YOLO-OBB models plug in via a manifest."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

# Stated target for the tiny test model (width 8, 2 classes, 96 scenes, 480 steps, 1 thread); an untrained
# model scores 0. See docs/imagery.md.
TINY_MAP50 = 0.25
TINY_CPU_S = 240


def test_tiny_training_reaches_stated_map50(tiny_model: dict) -> None:
    ev = tiny_model["eval"]
    assert tiny_model["cpu_s"] < TINY_CPU_S
    assert ev["images"] == 16
    assert ev["map50"] >= TINY_MAP50, ev["per_class"]
    files = {p.name for p in tiny_model["dir"].iterdir()}
    assert {"model.onnx", "manifest.json", "checkpoint.safetensors"} <= files
    assert not any(n.endswith((".pt", ".pth", ".pkl", ".bin")) for n in files)
    # Snapshots every 240 steps (to choose the best on held-out data), safetensors too.
    snaps = sorted(p.name for p in (tiny_model["dir"] / "snapshots").iterdir())
    assert snaps == ["step-000240.safetensors", "step-000480.safetensors"]
    manifest = json.loads((tiny_model["dir"] / "manifest.json").read_text())
    assert manifest["adapter"] == "centernet-obb" and manifest["classes"][0] == "ship/cargo/container_ship"


def test_inference_never_imports_torch(tiny_model: dict, tmp_path: Path) -> None:
    from imagery.helpers import png_path

    code = (
        "import sys, json\n"
        "from casemate.imagery.runtime import load_detector\n"
        "from casemate.imagery.pipeline import detect_raster\n"
        f"r = detect_raster({str(png_path(tmp_path))!r}, load_detector({str(tiny_model['dir'])!r}), workers=1)\n"
        "print(json.dumps({'torch': 'torch' in sys.modules, 'n': len(r.detections)}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["torch"] is False


def _fake_yolo_obb(path: Path, nc: int, anchors: np.ndarray) -> None:
    """An ONNX graph shaped like an Ultralytics YOLO-OBB export returning fixed anchors."""
    const = helper.make_tensor("anchors", TensorProto.FLOAT, anchors.shape, anchors.ravel().tolist())
    zero = helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0])
    nodes = [
        helper.make_node("ReduceMean", ["images"], ["m"], keepdims=1, axes=[1, 2, 3]),  # (N,1,1,1)
        helper.make_node("Squeeze", ["m", "ax"], ["m3"]),
        helper.make_node("Mul", ["m3", "zero"], ["z"]),
        helper.make_node("Add", ["z", "anchors"], ["output0"]),
    ]
    ax = helper.make_tensor("ax", TensorProto.INT64, [1], [3])
    graph = helper.make_graph(
        nodes, "yolo_obb_fake",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["n", 3, 64, 64])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, ["n", 4 + nc + 1, anchors.shape[2]])], initializer=[const, zero, ax])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    onnx.save(model, path)


def test_yolo_obb_adapter(tmp_path: Path) -> None:
    from casemate.imagery.runtime import load_detector

    nc = 2
    # anchors: (1, 4 + nc + 1, A): cx, cy, w, h, scores..., angle
    a = np.zeros((1, 4 + nc + 1, 3), dtype=np.float32)
    a[0, :, 0] = [30, 20, 6, 20, 0.1, 0.9, 0.3]  # class 1, taller than wide: length along y-ish
    a[0, :, 1] = [10, 10, 8, 4, 0.05, 0.1, 0.0]  # below threshold
    a[0, :, 2] = [50, 40, 12, 5, 0.7, 0.2, 0.0]
    _fake_yolo_obb(tmp_path / "yolo.onnx", nc, a)
    (tmp_path / "yolo.json").write_text(json.dumps(
        {"adapter": "yolo-obb", "classes": ["vehicle/car/sedan", "vehicle/truck/tanker"], "input_size": 64,
         "training_gsd_m": [0.3, 0.5], "score_threshold": 0.25}))
    det = load_detector(tmp_path / "yolo.onnx")
    out = det.detect(np.zeros((2, 64, 64, 3), dtype=np.uint8))
    assert len(out) == 2
    r = out[1]
    assert sorted(r.leaf.tolist()) == [0, 1]
    i = int(np.where(r.leaf == 1)[0][0])
    assert (r.length[i], r.width[i]) == (20, 6)
    assert abs(r.axis[i] - (0.3 + np.pi / 2)) < 1e-6 and np.isnan(r.heading[i])


def test_geojson_labels_over_geotiff_are_read_in_pixels(tmp_path: Path) -> None:
    """Training data as GeoTIFF + GeoJSON (WGS84 per RFC 7946) gives the same boxes as DOTA would."""
    import rasterio
    from pyproj import Transformer
    from rasterio.transform import from_origin

    from casemate.imagery.datasets import load_dataset
    from casemate.imagery.dri import DEFAULT_CLASSES
    from casemate.imagery.synth import generate_scene

    scene = generate_scene(np.random.default_rng(4), size=256, gsd=0.5)
    assert scene.objects
    t = from_origin(448000, 5412000, 0.5, 0.5)
    with rasterio.open(tmp_path / "s.tif", "w", driver="GTiff", width=256, height=256, count=3, dtype="uint8",
                       crs="EPSG:32631", transform=t) as dst:
        dst.write(np.moveaxis(scene.image, 2, 0))
    tr = Transformer.from_crs("EPSG:32631", "EPSG:4326", always_xy=True)
    feats = []
    for o in scene.objects:
        c = o.corners()
        xs, ys = t.c + c[:, 0] * 0.5, t.f - c[:, 1] * 0.5
        lon, lat = tr.transform(xs, ys)
        ring = [[float(a), float(b)] for a, b in zip(lon, lat, strict=True)]
        feats.append({"type": "Feature", "properties": {"class": o.cls.rsplit("/", 1)[-1]},
                      "geometry": {"type": "Polygon", "coordinates": [ring + ring[:1]]}})
    (tmp_path / "s.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": feats}))
    (sample,) = load_dataset(tmp_path, DEFAULT_CLASSES)
    assert sample.gsd == 0.5 and len(sample.boxes) == len(scene.objects)
    for b, o in zip(sample.boxes, scene.objects, strict=True):
        assert abs(b.cx - o.cx) < 0.05 and abs(b.cy - o.cy) < 0.05
        assert abs(b.length - o.length) < 0.05 and abs(b.width - o.width) < 0.05
        assert DEFAULT_CLASSES[b.cls] == o.cls
