"""The full offline bundle: build time and size per part, then an install with no network and the
demo, each timed. Needs network (or pip's configured mirrors) for the build and root for
`unshare -n`.

    .venv/bin/python benchmarks/bench_bundle.py [--out DIR] [--no-train] [--no-install]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from casemate.ops.bundle import build_bundle


def offline(cmd: str, loopback: bool = False) -> tuple[float, subprocess.CompletedProcess]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    script = ("ip link set lo up && " if loopback else "") + cmd
    t = time.perf_counter()
    res = subprocess.run(["unshare", "-n", "sh", "-c", script], capture_output=True, text=True, env=env)
    return time.perf_counter() - t, res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--no-train", action="store_true")
    ap.add_argument("--no-install", action="store_true")
    args = ap.parse_args(argv)
    base = Path(tempfile.mkdtemp(prefix="bench-bundle-"))
    out = args.out or base / "bundle"
    print("load:", os.getloadavg())
    report = build_bundle(out, profile="full", with_train=not args.no_train, key_path=base / "key.pem",
                          tar_path=base / "bundle.tar")
    info = json.loads((out / "bundle.json").read_text())
    print(json.dumps({"build": report.to_json(), "wheel_bytes": info["wheel_bytes"]}, indent=1))
    if not args.no_install:
        venv = base / "venv"
        flag = "" if args.no_train else " --with-train"
        t_install, res = offline(f"sh {out}/install.sh --venv {venv}{flag}")
        print(f"offline install: {t_install:.0f} s, exit {res.returncode}")
        t_demo, demo = offline(f"cd {base} && {venv}/bin/casemate demo", loopback=True)
        print(f"demo: {t_demo:.0f} s, exit {demo.returncode}")
        venv_mb = sum(p.stat().st_size for p in venv.rglob("*") if p.is_file()) / 1e6
        print(f"installed venv: {venv_mb:.0f} MB")
    print("load:", os.getloadavg())
    if args.out is None:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
