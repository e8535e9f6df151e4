"""Training recipe for the oriented CenterNet: focal loss on centres, L1 on the regressions.

CPU by default (threads pinned), a CUDA GPU when present. Checkpoints are safetensors.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from casemate.errors import UsageError
from casemate.fileutil import atomic_path, write_atomic
from casemate.imagery.datasets import Sample, load_dataset, read_rgb
from casemate.imagery.dri import DEFAULT_CLASSES
from casemate.imagery.model.export import export_onnx
from casemate.imagery.model.net import REG_CHANNELS, STRIDE, OrientedCenterNet


def _crop_sample(img: np.ndarray, boxes: list, size: int, rng: np.random.Generator, scale: float = 1.0):
    """A random size x size crop (zero padded) of an image already shrunk by `scale`; boxes whose
    centre falls inside are kept, as tuples (cx, cy, L, W, heading, cls, axis_aligned)."""
    h, w = img.shape[:2]
    x0 = int(rng.integers(0, max(w - size, 0) + 1))
    y0 = int(rng.integers(0, max(h - size, 0) + 1))
    out = np.zeros((size, size, 3), dtype=np.uint8)
    crop = img[y0:y0 + size, x0:x0 + size]
    out[: crop.shape[0], : crop.shape[1]] = crop
    k = 1.0 / scale
    kept = [(b.cx * k - x0, b.cy * k - y0, b.length * k, b.width * k, b.heading, b.cls, b.axis_aligned)
            for b in boxes if x0 <= b.cx * k < x0 + size and y0 <= b.cy * k < y0 + size]
    return out, kept


def _augment(img: np.ndarray, boxes: list, rng: np.random.Generator, photometric: bool = True):
    """Flips and right-angle turns (with the headings; an upright envelope swaps its sides), then
    colour (gain per channel, brightness, contrast, sometimes grey), blur and sensor noise."""
    size = img.shape[0]
    if rng.random() < 0.5:  # horizontal flip: x -> size - x, heading -> pi - heading
        img = img[:, ::-1]
        boxes = [(size - cx, cy, L, W, math.pi - h, c, aa) for cx, cy, L, W, h, c, aa in boxes]
    k = int(rng.integers(4))
    for _ in range(k):  # turn 90 degrees counter-clockwise: (x, y) -> (y, size - x)
        img = np.rot90(img)
        boxes = [(cy, size - cx, W, L, h, c, aa) if aa else (cy, size - cx, L, W, h - math.pi / 2, c, aa)
                 for cx, cy, L, W, h, c, aa in boxes]
    img = img.astype(np.float32)
    if photometric:
        if rng.random() < 0.1:
            img[:] = img.mean(axis=2, keepdims=True)  # panchromatic
        img *= rng.uniform(0.85, 1.15, size=3).astype(np.float32)
        mean = img.mean()
        img = (img - mean) * rng.uniform(0.7, 1.3) + mean * rng.uniform(0.75, 1.25) + rng.uniform(-15, 15)
        if rng.random() < 0.3:
            from scipy.ndimage import gaussian_filter

            img = gaussian_filter(img, sigma=(rng.uniform(0.4, 1.4),) * 2 + (0,))
        if rng.random() < 0.3:
            img += rng.normal(0, rng.uniform(2, 8), img.shape).astype(np.float32)
    else:
        img = img * rng.uniform(0.75, 1.25) + rng.uniform(-20, 20)
    return np.clip(img, 0, 255), boxes


def _targets(boxes: list, size: int, num_classes: int):
    o = size // STRIDE
    hm = np.zeros((num_classes, o, o), dtype=np.float32)
    reg = np.zeros((REG_CHANNELS, o, o), dtype=np.float32)
    mask = np.zeros((2, o, o), dtype=np.float32)  # oriented boxes, upright envelopes
    ys, xs = np.mgrid[0:o, 0:o]
    for cx, cy, L, W, h, c, aa in boxes:
        gx, gy = cx / STRIDE, cy / STRIDE
        ix, iy = int(gx), int(gy)
        if not (0 <= ix < o and 0 <= iy < o):
            continue
        sigma = max(0.6, 0.12 * math.sqrt(L * W) / STRIDE)
        r = int(3 * sigma) + 1
        y0, y1, x0, x1 = max(iy - r, 0), min(iy + r + 1, o), max(ix - r, 0), min(ix + r + 1, o)
        g = np.exp(-((xs[y0:y1, x0:x1] - ix) ** 2 + (ys[y0:y1, x0:x1] - iy) ** 2) / (2 * sigma**2))
        hm[c, y0:y1, x0:x1] = np.maximum(hm[c, y0:y1, x0:x1], g)
        if aa:  # only the envelope is known: x extent and y extent, scored through the prediction's envelope
            reg[:4, iy, ix] = [gx - ix, gy - iy, math.log(max(L, 1e-3) / STRIDE), math.log(max(W, 1e-3) / STRIDE)]
            mask[1, iy, ix] = 1.0
            mask[0, iy, ix] = 0.0
            continue
        axis = h % math.pi
        reg[:, iy, ix] = [gx - ix, gy - iy, math.log(max(L, 1e-3) / STRIDE), math.log(max(W, 1e-3) / STRIDE),
                          math.sin(2 * axis), math.cos(2 * axis), math.sin(h), math.cos(h)]
        mask[0, iy, ix] = 1.0
        mask[1, iy, ix] = 0.0
    return hm, reg, mask


def focal_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    p = torch.sigmoid(logits).clamp(1e-4, 1 - 1e-4)
    pos = target.eq(1).float()
    neg = 1 - pos
    pos_loss = torch.log(p) * (1 - p) ** 2 * pos
    neg_loss = torch.log(1 - p) * p**2 * (1 - target) ** 4 * neg
    n = pos.sum().clamp(min=1)
    return -(pos_loss.sum() + neg_loss.sum()) / n


def _log_envelope(reg: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """log x extent and log y extent (cells) of the oriented boxes the regression channels predict."""
    length, width = torch.exp(reg[:, 2].clamp(-5, 8)), torch.exp(reg[:, 3].clamp(-5, 8))
    c2 = reg[:, 5] / (torch.sqrt(reg[:, 4] ** 2 + reg[:, 5] ** 2) + 1e-6)
    ca, sa = torch.sqrt(((1 + c2) / 2).clamp(min=1e-6)), torch.sqrt(((1 - c2) / 2).clamp(min=1e-6))
    return torch.log(length * ca + width * sa), torch.log(length * sa + width * ca)


def detector_loss(hm_logits, reg_pred, hm_t, reg_t, mask) -> tuple[torch.Tensor, dict]:
    """Focal loss on centres; L1 on offsets (all boxes), on size/axis/heading (oriented boxes) and on
    the predicted box's envelope (upright-envelope labels, which say nothing of the axis)."""
    lh = focal_loss(hm_logits, hm_t)
    if mask.dim() == 3:  # (N, H, W): oriented only
        mask = torch.stack([mask, torch.zeros_like(mask)], dim=1)
    mo, ma = mask[:, 0:1], mask[:, 1:2]
    n = (mo.sum() + ma.sum()).clamp(min=1)
    no = mo.sum().clamp(min=1)
    err = torch.abs(reg_pred - reg_t)
    loff = (err[:, 0:2] * (mo + ma)).sum() / n
    lsize = (err[:, 2:4] * mo).sum() / no
    lax = (err[:, 4:6] * mo).sum() / no
    lhead = (err[:, 6:8] * mo).sum() / no
    lenv = torch.zeros((), device=reg_pred.device)
    if float(ma.sum()) > 0:
        ew, eh = _log_envelope(reg_pred)
        na = ma.sum().clamp(min=1)
        lenv = ((torch.abs(ew - reg_t[:, 2]) + torch.abs(eh - reg_t[:, 3])) * ma[:, 0]).sum() / na
    total = lh + loff + lsize + lax + 0.5 * lhead + lenv
    parts = {"hm": lh, "off": loff, "size": lsize, "axis": lax, "head": lhead, "env": lenv}
    return total, {k: float(v.detach()) for k, v in parts.items()}


def init_from_onnx(net: OrientedCenterNet, onnx_path: Path) -> int:
    """Warm start from an exported model of the same architecture (its Conv+BN pairs were fused on
    export: each conv gets the fused weights, its BN becomes the identity plus the fused bias).
    Returns the number of convolutions loaded; a shape mismatch is refused."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(onnx_path))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    modules = dict(net.named_modules())
    loaded = 0
    with torch.no_grad():
        for node in model.graph.node:
            if node.op_type != "Conv":
                continue
            # '/net/s4/s4.0/s4.0.0/Conv_output_0' -> module 's4.0.0'
            if node.input[1].startswith("net.") and node.input[1].endswith(".weight"):
                name = node.input[1][4:-7]  # an unfused conv keeps its parameter's name
            else:
                parts = node.output[0].strip("/").split("/")
                name = parts[-2] if len(parts) >= 3 else ""
            conv = modules.get(name)
            w = inits.get(node.input[1])
            b = inits.get(node.input[2]) if len(node.input) > 2 else None
            if conv is None or w is None or tuple(conv.weight.shape) != w.shape:
                raise ValueError(f"{onnx_path}: conv {node.output[0]} does not fit this network")
            conv.weight.copy_(torch.from_numpy(np.array(w)))
            if conv.bias is not None:
                conv.bias.copy_(torch.from_numpy(np.array(b)))
            else:
                bn = modules.get(name.rsplit(".", 1)[0] + "." + str(int(name.rsplit(".", 1)[1]) + 1))
                bn.weight.fill_(1.0)
                bn.bias.copy_(torch.from_numpy(np.array(b)))
                bn.running_mean.zero_()
                bn.running_var.fill_(1.0 - bn.eps)
            loaded += 1
    return loaded


@dataclass
class TrainSet:
    """Training data: a folder (any layout `load_dataset` reads) or samples, drawn with `weight`
    (share of the batches), each image also shown shrunk by each of `scales`."""

    data: Path | list[Sample]
    weight: float = 1.0
    scales: tuple[float, ...] = (1.0,)
    class_map: dict[str, str] | None = None
    names: list[str] | None = None
    gsd: float | None = None
    balance: float = 0.0  # 0: images drawn uniformly; 1: rare classes' images drawn as often as common ones'


def _image_weights(part: list[Sample], num_classes: int, balance: float) -> np.ndarray:
    """Per-image draw weights: an image weighs the inverse frequency (to the power `balance`) of the
    rarest class it holds, so a set whose scenes rarely show a container ship still trains on them."""
    if balance <= 0 or not part:
        return np.ones(len(part))
    counts = np.zeros(num_classes)
    for smp in part:
        for c in {b.cls for b in smp.boxes}:
            counts[c] += 1
    inv = np.where(counts > 0, counts.max() / np.maximum(counts, 1), 1.0) ** balance
    w = np.array([max((inv[b.cls] for b in smp.boxes), default=1.0) for smp in part])
    return w / w.mean()


@torch.no_grad()
def recalibrate_bn(net: OrientedCenterNet, batches: list[torch.Tensor]) -> int:
    """After a warm start from fused weights (BN = identity plus bias), measure each BN's input
    statistics on real batches and re-express it so that it computes the same function with
    honest running statistics: BN(x) = gamma (x - m) / sqrt(v + eps) + beta with gamma =
    sqrt(v + eps), beta = bias + m is still x + bias. BN can then train normally (batch statistics
    roughly equal the running ones, so the first steps do not break the warm start)."""
    bns = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    sums: dict[int, list] = {id(b): [0.0, 0.0, 0] for b in bns}

    def hook(mod, inp, _out):
        x = inp[0].double()
        acc = sums[id(mod)]
        acc[0] = acc[0] + x.sum(dim=(0, 2, 3))
        acc[1] = acc[1] + (x * x).sum(dim=(0, 2, 3))
        acc[2] += x.numel() // x.shape[1]

    handles = [b.register_forward_hook(hook) for b in bns]
    net.eval()
    for x in batches:
        net(x)
    for h in handles:
        h.remove()
    for b in bns:
        s1, s2, n = sums[id(b)]
        m = s1 / n
        v = (s2 / n - m * m).clamp(min=1e-6)
        gamma, beta = b.weight.double(), b.bias.double()
        # current function: gamma (x - rm) / sqrt(rv + eps) + beta = a x + c
        a = gamma / torch.sqrt(b.running_var.double() + b.eps)
        c = beta - a * b.running_mean.double()
        sd = torch.sqrt(v + b.eps)
        b.running_mean.copy_(m.float())
        b.running_var.copy_(v.float())
        b.weight.copy_((a * sd).float())
        b.bias.copy_((a * m + c).float())
    return len(bns)


def _shrink(img: np.ndarray, scale: float) -> np.ndarray:
    if scale == 1.0:
        return img
    t = torch.from_numpy(np.ascontiguousarray(np.moveaxis(img, 2, 0))).float()[None]
    size = (max(1, round(img.shape[0] / scale)), max(1, round(img.shape[1] / scale)))
    out = torch.nn.functional.interpolate(t, size=size, mode="bilinear", antialias=True, align_corners=False)
    return np.moveaxis(out[0].clamp(0, 255).round().byte().numpy(), 0, 2)


def _save_safetensors(state: dict, path: Path) -> None:
    with atomic_path(path, suffix=".safetensors") as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in state.items()}, str(tmp))


def train(data: list[Path | TrainSet], out: Path, *, classes: tuple[str, ...] = DEFAULT_CLASSES, width: int = 16,
          epochs: int = 30, max_minutes: float | None = None, batch: int = 16, crop: int = 256,
          lr: float = 2e-3, seed: int = 0, threads: int | None = None, resume: bool = False,
          init_onnx: Path | None = None, progress: Callable[[dict], None] | None = None, tile: int = 512,
          manifest_extra: dict | None = None, bn: str = "frozen", snapshot_every: int = 0) -> dict:
    """Train, checkpoint to out/checkpoint.safetensors, export out/model.onnx + out/manifest.json.

    `data`: folders or `TrainSet`s. A plain library function (no catalog, no CLI) so that a job
    runner can call it; returns the manifest's training record and the history.
    `bn` after a warm start: "frozen" (held at the fused identity) or "recalibrate" (statistics
    measured on training crops, then BN trains). `snapshot_every`: also keep
    out/snapshots/step-N.safetensors every N steps, for choosing the best on held-out data.
    """
    if bn not in ("frozen", "recalibrate"):
        raise UsageError(f"bn: expected 'frozen' or 'recalibrate', got {bn!r}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        torch.set_num_threads(threads or 1)
    sets = [d if isinstance(d, TrainSet) else TrainSet(Path(d)) for d in data]
    samples: list[Sample] = []
    pyramids: list[list[np.ndarray]] = []
    scales_of: list[tuple[float, ...]] = []
    probs: list[float] = []
    gsds: list[float] = []
    described = []
    for ts in sets:
        part = (ts.data if isinstance(ts.data, list) else
                load_dataset(Path(ts.data), classes, class_map=ts.class_map, names=ts.names, gsd=ts.gsd))
        for smp in part:
            img = read_rgb(smp.image_path)
            samples.append(smp)
            pyramids.append([_shrink(img, sc) for sc in ts.scales])
            scales_of.append(ts.scales)
        iw = _image_weights(part, len(classes), ts.balance)
        for j, smp in enumerate(part):
            probs.append(ts.weight * iw[j] / max(len(part), 1))
            if smp.gsd:
                gsds.extend(smp.gsd * sc for sc in ts.scales)
        described.append({"data": str(ts.data) if not isinstance(ts.data, list) else
                          sorted({str(x.image_path.parent.parent) for x in part}),
                          "images": len(part), "boxes": sum(len(x.boxes) for x in part), "weight": ts.weight,
                          "scales": list(ts.scales), "balance": ts.balance,
                          "axis_aligned_boxes": sum(b.axis_aligned for x in part for b in x.boxes)})
    if not samples:
        raise UsageError("no training images: give at least one labelled folder")
    p = np.asarray(probs) / np.sum(probs)
    net = OrientedCenterNet(len(classes), width=width).to(device)
    ckpt = out / "checkpoint.safetensors"
    if resume and ckpt.exists():
        net.load_state_dict(load_file(str(ckpt)))
    def draw_batch():
        xs, hms, regs, masks = [], [], [], []
        for i in rng.choice(len(samples), size=batch, p=p):
            k = int(rng.integers(len(scales_of[i])))
            img, boxes = _crop_sample(pyramids[i][k], samples[i].boxes, crop, rng, scales_of[i][k])
            img, boxes = _augment(img, boxes, rng)
            hm, reg, mask = _targets(boxes, crop, len(classes))
            xs.append(np.ascontiguousarray(np.moveaxis(img, 2, 0)) / 255.0)
            hms.append(hm)
            regs.append(reg)
            masks.append(mask)
        return (torch.from_numpy(np.stack(xs).astype(np.float32)).to(device),
                *(torch.from_numpy(np.stack(a)).to(device) for a in (hms, regs, masks)))

    if init_onnx is not None and not (resume and ckpt.exists()):
        init_from_onnx(net, Path(init_onnx))
        net.to(device)
        if bn == "recalibrate":
            recalibrate_bn(net, [draw_batch()[0] for _ in range(8)])
    # Fused weights only equal the exported function with BN held at identity: keep BN frozen
    # (eval mode) when warm-started, unless it was recalibrated (for this run and its resumptions).
    frozen_bn = init_onnx is not None and bn == "frozen"
    snaps = out / "snapshots"
    steps_per_epoch = max(1, len(samples) // batch)
    total_steps = steps_per_epoch * epochs
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    start = time.monotonic()
    step = 0
    history = []
    stopped_early = False
    for epoch in range(epochs):
        net.train()
        if frozen_bn:
            for mod in net.modules():
                if isinstance(mod, torch.nn.BatchNorm2d):
                    mod.eval()
        losses = []
        parts: dict = {}
        for _ in range(steps_per_epoch):
            # Progress is steps or wall-clock, whichever is further along, so a time-boxed run
            # still ends with a fully annealed learning rate.
            frac = step / total_steps
            if max_minutes:
                frac = max(frac, (time.monotonic() - start) / (max_minutes * 60))
            if frac >= 1.0:
                stopped_early = True
                break
            warm = min(1.0, (step + 1) / 50)
            for g in opt.param_groups:
                g["lr"] = lr * warm * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0)))
            x, hm_t, reg_t, mask_t = draw_batch()
            hm_logits, reg_pred = net(x)
            loss, parts = detector_loss(hm_logits, reg_pred, hm_t, reg_t, mask_t)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 10.0)
            opt.step()
            step += 1
            losses.append(float(loss.detach()))
            if snapshot_every and step % snapshot_every == 0:
                snaps.mkdir(exist_ok=True)
                _save_safetensors(net.state_dict(), snaps / f"step-{step:06d}.safetensors")
        if not losses:
            break
        rec = {"epoch": epoch + 1, "step": step, "loss": float(np.mean(losses)),
               "minutes": round((time.monotonic() - start) / 60, 2), **parts}
        history.append(rec)
        _save_safetensors(net.state_dict(), ckpt)
        if progress:
            progress(rec)
        if stopped_early:
            break
    net = net.to("cpu").eval()
    info = {
        "training": {
            "recipe": "casemate.imagery.model.train", "images": len(samples), "epochs_run": len(history),
            "steps": step, "batch": batch, "crop": crop, "lr": lr, "seed": seed, "device": device,
            "threads": threads or 1, "init": str(init_onnx) if init_onnx else None, "frozen_bn": frozen_bn, "bn": bn,
            "minutes": round((time.monotonic() - start) / 60, 2),
            "final_loss": history[-1]["loss"] if history else None, "sets": described,
        },
        "training_gsd_m": [round(min(gsds), 3), round(max(gsds), 3)] if gsds else None,
        "normalization": "rgb uint8 / 255",
        **(manifest_extra or {}),
    }
    export_onnx(net, out, classes=list(classes), manifest_extra=info, tile=tile)
    write_atomic(out / "history.json", json.dumps(history, indent=1))
    return {"out": str(out), "history": history, **info}
