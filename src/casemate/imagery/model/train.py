"""Training recipe for the oriented CenterNet: focal loss on centres, L1 on the regressions.

CPU by default (threads pinned), a CUDA GPU when present. Checkpoints are safetensors.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from casemate.fileutil import atomic_path, write_atomic
from casemate.imagery.datasets import Sample, load_dataset, read_rgb
from casemate.imagery.dri import DEFAULT_CLASSES
from casemate.imagery.model.export import export_onnx
from casemate.imagery.model.net import REG_CHANNELS, STRIDE, OrientedCenterNet


def _crop_sample(img: np.ndarray, boxes: list, size: int, rng: np.random.Generator):
    """A random size x size crop (zero padded); boxes whose centre falls inside are kept."""
    h, w = img.shape[:2]
    x0 = int(rng.integers(0, max(w - size, 0) + 1))
    y0 = int(rng.integers(0, max(h - size, 0) + 1))
    out = np.zeros((size, size, 3), dtype=np.uint8)
    crop = img[y0:y0 + size, x0:x0 + size]
    out[: crop.shape[0], : crop.shape[1]] = crop
    kept = [(b.cx - x0, b.cy - y0, b.length, b.width, b.heading, b.cls) for b in boxes
            if x0 <= b.cx < x0 + size and y0 <= b.cy < y0 + size]
    return out, kept


def _augment(img: np.ndarray, boxes: list, rng: np.random.Generator):
    """Flips and right-angle turns (with the headings), brightness and contrast."""
    size = img.shape[0]
    if rng.random() < 0.5:  # horizontal flip: x -> size - x, heading -> pi - heading
        img = img[:, ::-1]
        boxes = [(size - cx, cy, L, W, math.pi - h, c) for cx, cy, L, W, h, c in boxes]
    k = int(rng.integers(4))
    for _ in range(k):  # turn 90 degrees counter-clockwise: (x, y) -> (y, size - x)
        img = np.rot90(img)
        boxes = [(cy, size - cx, L, W, h - math.pi / 2, c) for cx, cy, L, W, h, c in boxes]
    img = img.astype(np.float32) * rng.uniform(0.75, 1.25) + rng.uniform(-20, 20)
    return np.clip(img, 0, 255), boxes


def _targets(boxes: list, size: int, num_classes: int):
    o = size // STRIDE
    hm = np.zeros((num_classes, o, o), dtype=np.float32)
    reg = np.zeros((REG_CHANNELS, o, o), dtype=np.float32)
    mask = np.zeros((o, o), dtype=np.float32)
    ys, xs = np.mgrid[0:o, 0:o]
    for cx, cy, L, W, h, c in boxes:
        gx, gy = cx / STRIDE, cy / STRIDE
        ix, iy = int(gx), int(gy)
        if not (0 <= ix < o and 0 <= iy < o):
            continue
        sigma = max(0.6, 0.12 * math.sqrt(L * W) / STRIDE)
        r = int(3 * sigma) + 1
        y0, y1, x0, x1 = max(iy - r, 0), min(iy + r + 1, o), max(ix - r, 0), min(ix + r + 1, o)
        g = np.exp(-((xs[y0:y1, x0:x1] - ix) ** 2 + (ys[y0:y1, x0:x1] - iy) ** 2) / (2 * sigma**2))
        hm[c, y0:y1, x0:x1] = np.maximum(hm[c, y0:y1, x0:x1], g)
        axis = h % math.pi
        reg[:, iy, ix] = [gx - ix, gy - iy, math.log(max(L, 1e-3) / STRIDE), math.log(max(W, 1e-3) / STRIDE),
                          math.sin(2 * axis), math.cos(2 * axis), math.sin(h), math.cos(h)]
        mask[iy, ix] = 1.0
    return hm, reg, mask


def focal_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    p = torch.sigmoid(logits).clamp(1e-4, 1 - 1e-4)
    pos = target.eq(1).float()
    neg = 1 - pos
    pos_loss = torch.log(p) * (1 - p) ** 2 * pos
    neg_loss = torch.log(1 - p) * p**2 * (1 - target) ** 4 * neg
    n = pos.sum().clamp(min=1)
    return -(pos_loss.sum() + neg_loss.sum()) / n


def detector_loss(hm_logits, reg_pred, hm_t, reg_t, mask) -> tuple[torch.Tensor, dict]:
    lh = focal_loss(hm_logits, hm_t)
    m = mask.unsqueeze(1)
    n = mask.sum().clamp(min=1)
    l1 = (torch.abs(reg_pred - reg_t) * m).sum(dim=(0, 2, 3)) / n
    loff, lsize, lax, lhead = l1[0:2].sum(), l1[2:4].sum(), l1[4:6].sum(), l1[6:8].sum()
    total = lh + loff + lsize + lax + 0.5 * lhead
    parts = {"hm": lh, "off": loff, "size": lsize, "axis": lax, "head": lhead}
    return total, {k: float(v.detach()) for k, v in parts.items()}


def _save_safetensors(state: dict, path: Path) -> None:
    with atomic_path(path, suffix=".safetensors") as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in state.items()}, str(tmp))


def train(data: list[Path], out: Path, *, classes: tuple[str, ...] = DEFAULT_CLASSES, width: int = 16,
          epochs: int = 30, max_minutes: float | None = None, batch: int = 16, crop: int = 256,
          lr: float = 2e-3, seed: int = 0, threads: int | None = None, resume: bool = False,
          progress: Callable[[dict], None] | None = None, tile: int = 512,
          manifest_extra: dict | None = None) -> dict:
    """Train, checkpoint to out/checkpoint.safetensors, export out/model.onnx + out/manifest.json."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        torch.set_num_threads(threads or 1)
    samples: list[Sample] = []
    for d in data:
        samples.extend(load_dataset(Path(d), classes))
    images = [read_rgb(s.image_path) for s in samples]
    gsds = [s.gsd for s in samples if s.gsd]
    net = OrientedCenterNet(len(classes), width=width).to(device)
    ckpt = out / "checkpoint.safetensors"
    if resume and ckpt.exists():
        net.load_state_dict(load_file(str(ckpt)))
    steps_per_epoch = max(1, len(samples) // batch)
    total_steps = steps_per_epoch * epochs
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    start = time.monotonic()
    step = 0
    history = []
    stopped_early = False
    for epoch in range(epochs):
        net.train()
        order = rng.permutation(len(samples))
        losses = []
        for b in range(steps_per_epoch):
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
            idx = order[b * batch:(b + 1) * batch]
            xs, hms, regs, masks = [], [], [], []
            for i in idx:
                img, boxes = _crop_sample(images[i], samples[i].boxes, crop, rng)
                img, boxes = _augment(img, boxes, rng)
                hm, reg, mask = _targets(boxes, crop, len(classes))
                xs.append(np.ascontiguousarray(np.moveaxis(img, 2, 0)) / 255.0)
                hms.append(hm)
                regs.append(reg)
                masks.append(mask)
            x = torch.from_numpy(np.stack(xs).astype(np.float32)).to(device)
            hm_logits, reg_pred = net(x)
            loss, parts = detector_loss(hm_logits, reg_pred, torch.from_numpy(np.stack(hms)).to(device),
                                        torch.from_numpy(np.stack(regs)).to(device),
                                        torch.from_numpy(np.stack(masks)).to(device))
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 10.0)
            opt.step()
            step += 1
            losses.append(float(loss.detach()))
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
            "minutes": round((time.monotonic() - start) / 60, 2), "final_loss": history[-1]["loss"] if history else None,
            "data": [str(d) for d in data],
        },
        "training_gsd_m": [round(min(gsds), 3), round(max(gsds), 3)] if gsds else None,
        "normalization": "rgb uint8 / 255",
        **(manifest_extra or {}),
    }
    export_onnx(net, out, classes=list(classes), manifest_extra=info, tile=tile)
    write_atomic(out / "history.json", json.dumps(history, indent=1))
    return {"out": str(out), "history": history, **info}
