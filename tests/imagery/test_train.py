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
