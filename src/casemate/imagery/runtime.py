"""Detectors behind one small interface, run by ONNX Runtime (never torch).

`load_detector(name_or_path)` resolves "default" (the model shipped in the package), a model
folder (model.onnx + manifest.json), a manifest path or an .onnx with a manifest beside it.
Adapters turn a model's raw outputs into oriented boxes in tile pixels:
- "centernet-obb": our own detector (heatmap, peaks, regressions);
- "yolo-obb": an Ultralytics YOLO-OBB export, output (N, 4 + classes + 1, anchors) with
  cx, cy, w, h in input pixels, per-class scores and the angle in radians.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from casemate.errors import IntegrityError, ModelMissing, UsageError

PACKAGE_MODELS = Path(__file__).resolve().parent / "models"


class DriSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    johnson_px: dict[Literal["D", "R", "I"], float] = Field(default_factory=dict)
    min_score: dict[Literal["D", "R", "I"], float] = Field(default_factory=dict)


class DetectorManifest(BaseModel):
    """What a detector's manifest.json must hold (unknown keys are kept: training records, metrics)."""

    model_config = ConfigDict(extra="allow")
    format: str = "casemate-detector/1"
    adapter: Literal["centernet-obb", "yolo-obb"] = "centernet-obb"
    onnx: str = "model.onnx"
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    classes: list[str] = Field(min_length=1)
    input_size: int = Field(default=512, ge=32, le=8192)
    stride: int = Field(default=4, ge=1, le=64)
    score_threshold: float = Field(default=0.25, gt=0, lt=1)
    training_gsd_m: list[float] | None = Field(default=None, min_length=1, max_length=2)
    label: str | None = None
    name: str | None = None
    dri: DriSettings | None = None

    @field_validator("classes")
    @classmethod
    def _paths(cls, v: list[str]) -> list[str]:
        for name in v:
            parts = [p for p in str(name).split("/") if p]
            if not 1 <= len(parts) <= 3:
                raise ValueError(f"class {name!r}: expected 'category/class/type' (1 to 3 parts)")
        return v

    @field_validator("training_gsd_m")
    @classmethod
    def _gsd(cls, v: list[float] | None) -> list[float] | None:
        if v is not None and (min(v) <= 0 or v[0] > v[-1]):
            raise ValueError("expected [min, max] metres per pixel, 0 < min <= max")
        return v


def validate_manifest(manifest: object, where: Path | str = "manifest") -> dict:
    """The manifest as a plain dict once valid; else a UsageError naming the key and what is allowed."""
    if not isinstance(manifest, dict):
        raise UsageError(f"{where}: a manifest must be a JSON object")
    try:
        m = DetectorManifest.model_validate(manifest)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err["loc"]) or "(root)"
        raise UsageError(f"{where}: key '{key}': {err['msg']}"
                         + (f" (got {err['input']!r})" if "input" in err and not isinstance(err["input"], dict)
                            else "")) from None
    return {**manifest, **m.model_dump(exclude_none=True, exclude_unset=False)}


@dataclass
class RawBoxes:
    """Detections of one tile in tile pixels; `axis` is the length axis direction (radians)."""

    cx: np.ndarray
    cy: np.ndarray
    length: np.ndarray
    width: np.ndarray
    axis: np.ndarray
    heading: np.ndarray  # front direction (radians) or NaN when the model cannot tell
    score: np.ndarray
    leaf: np.ndarray  # int class index
    leaf_scores: np.ndarray  # (n, classes)

    @classmethod
    def empty(cls, num_classes: int) -> RawBoxes:
        z = np.zeros(0)
        return cls(z, z, z, z, z, z, z, np.zeros(0, dtype=np.int64), np.zeros((0, num_classes)))


class Detector(Protocol):
    name: str
    digest: str
    classes: list[str]
    input_size: int
    manifest: dict
    onnx_path: Path

    def detect(self, batch: np.ndarray) -> list[RawBoxes]:
        """batch: (N, S, S, 3) uint8 tiles -> one RawBoxes per tile."""
        ...


def _session(path: Path, threads: int):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    try:
        return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
        raise UsageError(f"{path}: not a loadable ONNX model ({str(exc).splitlines()[0][:160]})") from None


@dataclass
class _Base:
    onnx_path: Path
    manifest: dict
    threads: int = 1
    score_threshold: float = 0.25
    name: str = ""
    digest: str = ""
    classes: list[str] = field(default_factory=list)
    input_size: int = 512

    def __post_init__(self) -> None:
        self.session = _session(self.onnx_path, self.threads)
        self.classes = list(self.manifest["classes"])
        self.input_size = int(self.manifest.get("input_size", 512))
        self.name = str(self.manifest.get("name") or self.onnx_path.parent.name)
        self.digest = self.digest or "sha256:" + _sha256(self.onnx_path)
        self.score_threshold = float(self.manifest.get("score_threshold", self.score_threshold))


class CenterNetDetector(_Base):
    def detect(self, batch: np.ndarray) -> list[RawBoxes]:
        x = np.ascontiguousarray(batch.transpose(0, 3, 1, 2), dtype=np.float32) * (1.0 / 255.0)
        hm, peaks, reg = self.session.run(None, {"images": x})
        stride = int(self.manifest.get("stride", 4))
        out = []
        for n in range(len(batch)):
            ys, xs = np.nonzero(peaks[n, 0] >= self.score_threshold)
            if len(ys) == 0:
                out.append(RawBoxes.empty(len(self.classes)))
                continue
            leaf_scores = hm[n][:, ys, xs].T.astype(np.float64)
            r = reg[n][:, ys, xs].astype(np.float64)
            leaf = leaf_scores.argmax(axis=1)
            axis = 0.5 * np.arctan2(r[4], r[5])
            heading = np.arctan2(r[6], r[7])
            # The axis head is reliable; the heading head only chooses which end is the front.
            flip = np.cos(heading - axis) < 0
            front = np.where(flip, axis + math.pi, axis) % (2 * math.pi)
            out.append(RawBoxes(
                cx=(xs + r[0]) * stride, cy=(ys + r[1]) * stride,
                length=np.exp(np.clip(r[2], -5, 8)) * stride, width=np.exp(np.clip(r[3], -5, 8)) * stride,
                axis=axis, heading=front, score=peaks[n, 0, ys, xs].astype(np.float64), leaf=leaf,
                leaf_scores=leaf_scores,
            ))
        return out


class YoloObbDetector(_Base):
    def detect(self, batch: np.ndarray) -> list[RawBoxes]:
        x = np.ascontiguousarray(batch.transpose(0, 3, 1, 2), dtype=np.float32) * (1.0 / 255.0)
        inp = self.session.get_inputs()[0].name
        pred = self.session.run(None, {inp: x})[0]  # (N, 4 + C + 1, A)
        nc = len(self.classes)
        out = []
        for n in range(len(batch)):
            p = pred[n]
            scores = p[4:4 + nc].T
            best = scores.max(axis=1)
            keep = best >= self.score_threshold
            if not keep.any():
                out.append(RawBoxes.empty(nc))
                continue
            bx = p[:, keep]
            sc = scores[keep].astype(np.float64)
            w, h, ang = bx[2], bx[3], bx[4 + nc]
            longer_is_w = w >= h
            axis = np.where(longer_is_w, ang, ang + math.pi / 2)
            out.append(RawBoxes(
                cx=bx[0].astype(np.float64), cy=bx[1].astype(np.float64),
                length=np.maximum(w, h).astype(np.float64), width=np.minimum(w, h).astype(np.float64),
                axis=axis.astype(np.float64), heading=np.full(len(sc), np.nan), score=sc.max(axis=1),
                leaf=sc.argmax(axis=1), leaf_scores=sc,
            ))
        return out


ADAPTERS = {"centernet-obb": CenterNetDetector, "yolo-obb": YoloObbDetector}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def resolve_model(name_or_path: str | Path | None) -> tuple[Path, Path]:
    """-> (onnx path, manifest path)."""
    ref = str(name_or_path or "default")
    p = Path(ref).expanduser()
    if p.is_dir():
        onnx, manifest = p / "model.onnx", p / "manifest.json"
    elif p.suffix == ".json" and p.is_file():
        manifest = p
        onnx = p.parent / (json.loads(p.read_text()).get("onnx") or "model.onnx")
    elif p.suffix == ".onnx" and p.is_file():
        onnx = p
        manifest = p.with_suffix(".json") if p.with_suffix(".json").exists() else p.parent / "manifest.json"
    elif "/" not in ref and (PACKAGE_MODELS / ref).is_dir():
        onnx, manifest = PACKAGE_MODELS / ref / "model.onnx", PACKAGE_MODELS / ref / "manifest.json"
    else:
        raise ModelMissing(f"model {ref!r} not found: give a model folder (model.onnx + manifest.json), "
                           f"a manifest or .onnx path, or the name of a model in {PACKAGE_MODELS}; "
                           "train one with `casemate imagery train`")
    if not onnx.is_file():
        raise ModelMissing(f"{onnx}: model file missing; reinstall casemate or train one with "
                           "`casemate imagery train --data DIR --out MODEL`")
    if not manifest.is_file():
        raise ModelMissing(f"{manifest}: manifest missing beside {onnx.name}; an external ONNX needs a "
                           'manifest JSON: {"adapter": "yolo-obb", "classes": [...], "input_size": 1024, '
                           '"training_gsd_m": [0.3, 0.6]}')
    return onnx, manifest


def load_detector(name_or_path: str | Path | None = None, *, threads: int = 1) -> Detector:
    onnx, manifest_path = resolve_model(name_or_path)
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UsageError(f"{manifest_path}: not valid JSON ({exc})") from None
    return detector_from(onnx, manifest, threads=threads, manifest_path=manifest_path)


def detector_from(onnx: Path, manifest: dict, *, threads: int = 1, manifest_path: Path | str = "manifest") -> Detector:
    """A detector from an ONNX file and its manifest (e.g. a catalog blob and its metadata)."""
    manifest = validate_manifest(manifest, manifest_path)
    # The hash is checked before ONNX Runtime parses a byte of the file.
    digest = _sha256(Path(onnx))
    expected = manifest.get("sha256")
    if expected and digest != expected:
        raise IntegrityError(f"{onnx}: sha256 {digest[:12]}... does not match its manifest ({expected[:12]}...): "
                             "damaged or replaced file; reinstall or re-export the model")
    return ADAPTERS[manifest["adapter"]](onnx, manifest, threads=threads, digest="sha256:" + digest)
