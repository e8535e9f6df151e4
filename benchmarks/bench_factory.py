"""Model factory benchmarks: dataset import throughput, Slurm submission-to-running latency,
training throughput of one detector job.

    .venv/bin/python benchmarks/bench_factory.py --only import     # 10,000 small labelled images
    .venv/bin/python benchmarks/bench_factory.py --only slurm      # needs slurmctld, slurmd, munge
    .venv/bin/python benchmarks/bench_factory.py --only train      # steps/s of a small training job
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "factory"))


def _load() -> str:
    return os.getloadavg().__repr__()


def make_yolo(root: Path, n: int, size: int = 32) -> None:
    """n distinct small PNGs (about 1-3 KB) with 1-4 boxes each, YOLO layout."""
    from PIL import Image

    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    (root / "classes.txt").write_text("car\nbus\n")
    base = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
    for i in range(n):
        img = base.copy()
        img[0, 0, :] = [i % 256, (i // 256) % 256, i // 65536]  # distinct content per image
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="PNG", compress_level=1)
        (root / "images" / f"im{i:05d}.png").write_bytes(buf.getvalue())
        k = int(rng.integers(1, 5))
        lines = [f"{int(rng.integers(2))} {rng.uniform(0.3, 0.7):.5f} {rng.uniform(0.3, 0.7):.5f} 0.2 0.1"
                 for _ in range(k)]
        (root / "labels" / f"im{i:05d}.txt").write_text("\n".join(lines) + "\n")


def bench_import(n: int) -> dict:
    from casemate.factory.datasets import import_dataset
    from casemate.workspace import Workspace

    tmp = Path(tempfile.mkdtemp(prefix="bench-factory-"))
    try:
        make_yolo(tmp / "data", n)
        ws = Workspace.init(tmp / "ws")
        admin = ws.acting_user("admin")
        t0 = time.perf_counter()
        rep = import_dataset(ws, admin, tmp / "data", fmt="yolo", label="DR")
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        again = import_dataset(ws, admin, tmp / "data", fmt="yolo", label="DR")
        second = time.perf_counter() - t0
        assert again.unchanged and again.dataset.id == rep.dataset.id
        ws.close()
        return {"images": n, "import_s": round(first, 2), "images_per_s": round(n / first),
                "reimport_s": round(second, 2), "reimport_images_per_s": round(n / second), "load": _load()}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def bench_slurm(runs: int) -> dict:
    """Submission to RUNNING, as `casemate train` does it (submitit, then our own state file)."""
    from slurm_cluster import SlurmCluster, missing_binaries

    if missing_binaries():
        return {"skipped": f"Slurm binaries absent: {', '.join(missing_binaries())}"}
    tmp = Path(tempfile.mkdtemp(prefix="bench-slurm-"))
    cluster = SlurmCluster(tmp / "cluster")
    t0 = time.perf_counter()
    cluster.start()
    start_s = time.perf_counter() - t0
    os.environ.update(cluster.env)
    try:
        from casemate.factory.executors import SlurmExecutor, squeue_state

        lat = []
        for _ in range(runs):
            ex = SlurmExecutor(folder=tmp / "jobs")
            t0 = time.perf_counter()
            jid = ex.submit_callable(time.sleep, 3)
            while squeue_state(jid) != "RUNNING":
                time.sleep(0.02)
            lat.append(time.perf_counter() - t0)
            subprocess.run(["scancel", jid], env={**os.environ, **cluster.env}, check=False)
            # A warm, idle cluster for the next one: the cancelled job has left the node.
            while squeue_state(jid) in ("RUNNING", "COMPLETING", "PENDING"):
                time.sleep(0.05)
        jobs = _factory_jobs_to_running(tmp, runs=3)
        return {"cluster_start_s": round(start_s, 2), "submit_to_running_s": [round(x, 3) for x in lat],
                "median_s": round(statistics.median(lat), 3),
                "train_job_submit_to_running_row_s": jobs, "load": _load()}
    finally:
        cluster.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def _factory_jobs_to_running(tmp: Path, runs: int) -> list[float]:
    """`submit_training` returning -> the job's own process has marked its row running."""
    from factory_helpers import TINY_CLASSES, TINY_PARAMS, make_workspace, synthetic_dota

    from casemate.factory.datasets import import_dataset
    from casemate.factory.jobs import JobStore
    from casemate.factory.service import cancel_job
    from casemate.factory.submit import submit_training

    ws = make_workspace(tmp / "ws")
    admin = ws.acting_user("admin")
    ds = import_dataset(ws, admin, synthetic_dota(tmp / "d", n=4), fmt="dota", label="DR").dataset.id
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        job = submit_training(ws, admin, dataset=ds, executor="slurm", classes=list(TINY_CLASSES),
                              **{**TINY_PARAMS, "epochs": 1000})
        while JobStore(ws).get_raw(job.id).state != "running":
            time.sleep(0.02)
        out.append(round(time.perf_counter() - t0, 3))
        cancel_job(ws, admin, job.id)
        from casemate.factory.executors import squeue_state

        while squeue_state(job.external_id) in ("RUNNING", "COMPLETING", "PENDING"):
            time.sleep(0.05)
    ws.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", choices=["import", "slurm"], default=None)
    ap.add_argument("--images", type=int, default=10_000)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    out = {"machine": f"{platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}",
           "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    if args.only in (None, "import"):
        out["import"] = bench_import(args.images)
    if args.only in (None, "slurm"):
        out["slurm"] = bench_slurm(args.runs)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
