"""Builders for factory tests: workspaces with users, small labelled image folders."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from casemate.workspace import Workspace

ROOT = Path(__file__).resolve().parents[2]


def shared_data(*parts: str) -> Path:
    """A path under shared/data beside the checkout (or beside the folder of worktrees holding
    it); skips the test, saying so, when the data is absent."""
    import pytest

    for base in (ROOT.parent / "shared" / "data", ROOT.parent.parent / "shared" / "data"):
        if base.joinpath(*parts).exists():
            return base.joinpath(*parts)
    pytest.skip(f"real data absent: {ROOT.parent / 'shared' / 'data' / Path(*parts)} (the shared/ folder "
                "beside the checkout)")

# The lines the lead adds to casemate.cli.LAZY_COMMANDS (tests patch them in).
FACTORY_COMMANDS = {
    "dataset": "casemate.factory.cli:dataset_group",
    "jobs": "casemate.factory.cli:jobs_group",
    "train": "casemate.factory.cli:train_group",
    "models": "casemate.factory.cli:models_group",
    "check-labels": "casemate.factory.cli:check_labels_cmd",
}


def make_workspace(home: Path) -> Workspace:
    ws = Workspace.init(home)
    admin = ws.acting_user("admin")
    ws.users.add(admin, "nora", "NP", ["analyst"])
    ws.users.add(admin, "dana", "DR", ["analyst"])
    ws.users.add(admin, "sam", "S//ALPHA", ["analyst", "officer"])
    return ws


def write_png(path: Path, w: int, h: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path)


def yolo_folder(root: Path, n: int = 4, *, size: tuple[int, int] = (64, 48), classes=("car", "bus"),
                names_file: str = "data.yaml", seed: int = 0) -> Path:
    """n images with 1-3 boxes each, YOLO layout; class names in data.yaml or classes.txt."""
    rng = np.random.default_rng(seed)
    w, h = size
    for i in range(n):
        write_png(root / "images" / f"img{i:03d}.png", w, h, seed * 1000 + i)
        lines = []
        for _ in range(int(rng.integers(1, 4))):
            bw, bh = rng.uniform(0.05, 0.3), rng.uniform(0.05, 0.3)
            cx, cy = rng.uniform(bw / 2, 1 - bw / 2), rng.uniform(bh / 2, 1 - bh / 2)
            lines.append(f"{int(rng.integers(len(classes)))} {cx:.6f} {cy:.6f} {bw:.6f} {bh:.6f}")
        (root / "labels").mkdir(parents=True, exist_ok=True)
        (root / "labels" / f"img{i:03d}.txt").write_text("\n".join(lines) + "\n")
    if names_file == "data.yaml":
        (root / "data.yaml").write_text("names:\n" + "".join(f"  {i}: {c}\n" for i, c in enumerate(classes)))
    elif names_file == "classes.txt":
        (root / "classes.txt").write_text("\n".join(classes) + "\n")
    return root


def dota_folder(root: Path, n: int = 3, size: tuple[int, int] = (80, 60)) -> Path:
    w, h = size
    for i in range(n):
        write_png(root / "images" / f"P{i:04d}.png", w, h, 500 + i)
        (root / "labelTxt").mkdir(parents=True, exist_ok=True)
        (root / "labelTxt" / f"P{i:04d}.txt").write_text(
            "imagesource:test\ngsd:0.3\n"
            f"10 10 30 12 29 20 9 18 small-vehicle 0\n40 30 60 30 60 50 40 50 ship {i % 2}\n")
    return root


def coco_folder(root: Path, n: int = 3, size: tuple[int, int] = (70, 50)) -> Path:
    w, h = size
    images, anns = [], []
    for i in range(n):
        write_png(root / "images" / f"c{i}.png", w, h, 900 + i)
        images.append({"id": i + 10, "file_name": f"c{i}.png", "width": w, "height": h})
        anns.append({"id": len(anns) + 1, "image_id": i + 10, "category_id": 3, "bbox": [5.5, 6.25, 20, 10]})
        anns.append({"id": len(anns) + 1, "image_id": i + 10, "category_id": 7, "bbox": [30, 20, 8.125, 9]})
    cats = [{"id": 3, "name": "car"}, {"id": 7, "name": "airplane"}]
    (root / "instances.json").write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return root


TINY_CLASSES = ("ship/cargo/container_ship", "aircraft/airliner/narrowbody")
# A few steps of a very small network: what the job tests need to exercise the whole path.
TINY_PARAMS = {"epochs": 2, "batch": 4, "width": 4, "crop": 96, "tile": 256, "lr": 4e-3, "threads": 1}


def synthetic_dota(root: Path, n: int = 8, seed: int = 11, size: int = 96) -> Path:
    """Synthetic scenes (ships, aircraft) in DOTA layout, from imagery's scene generator."""
    from casemate.imagery.synth import write_dataset

    write_dataset(root, n, seed=seed, size=size, classes=TINY_CLASSES)
    (root / "dataset.json").unlink(missing_ok=True)
    return root


def wait_state(ws, job_id: str, states: tuple[str, ...], timeout: float = 120.0, what=None):  # type: ignore[no-untyped-def]
    import time

    from casemate.factory.executors import reconcile
    from casemate.factory.jobs import JobStore

    store = JobStore(ws)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = reconcile(ws, store.get_raw(job_id))
        if job.state in states and (what is None or what(job)):
            return job
        time.sleep(0.1)
    job = store.get_raw(job_id)
    raise AssertionError(f"job {job_id} still {job.state} after {timeout} s; log:\n{job.log}")
