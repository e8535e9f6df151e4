"""Export a trained detector to ONNX plus its manifest; weights travel as safetensors only."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from casemate.fileutil import atomic_path, write_atomic
from casemate.imagery.model.net import STRIDE, ExportWrapper, OrientedCenterNet


def export_onnx(net: OrientedCenterNet, out_dir: Path, *, classes: list[str], manifest_extra: dict,
                tile: int = 512) -> Path:
    """Write out_dir/model.onnx and out_dir/manifest.json (each via a temp file and a rename)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    net = net.eval()
    wrapper = ExportWrapper(net)
    with atomic_path(out_dir / "model.onnx", suffix=".onnx") as tmp:
        torch.onnx.export(
            wrapper, (torch.zeros(1, 3, tile, tile),), str(tmp), dynamo=False, opset_version=17,
            input_names=["images"], output_names=["heatmap", "peaks", "reg"],
            dynamic_axes={"images": {0: "n", 2: "h", 3: "w"}, "heatmap": {0: "n", 2: "oh", 3: "ow"},
                          "peaks": {0: "n", 2: "oh", 3: "ow"}, "reg": {0: "n", 2: "oh", 3: "ow"}},
            do_constant_folding=True,
        )
    digest = hashlib.sha256((out_dir / "model.onnx").read_bytes()).hexdigest()
    manifest = {
        "format": "casemate-detector/1",
        "adapter": "centernet-obb",
        "onnx": "model.onnx",
        "sha256": digest,
        "classes": list(classes),
        "input_size": tile,
        "stride": STRIDE,
        "width": net.width,
        **manifest_extra,
    }
    write_atomic(out_dir / "manifest.json", json.dumps(manifest, indent=2))
    return out_dir / "manifest.json"
