"""Run every benchmark script (`make bench`), one after the other, each in its own process.

    .venv/bin/python -m benchmarks.run_all [--only NAME ...] [--out out/bench]

Each script's output goes to OUT/NAME.txt; a summary line per script (seconds, exit status) is
printed. The figures that matter are copied by hand into docs/benchmarks.md with date and machine.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def scripts() -> list[Path]:
    return sorted(HERE.glob("bench_*.py"))


def main(argv: list[str] | None = None) -> int:
    names = [p.stem.removeprefix("bench_") for p in scripts()]
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="+", choices=names, default=None, help="run only these benchmarks")
    ap.add_argument("--out", type=Path, default=Path("out/bench"), help="folder for each script's output")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    failed = 0
    for path in scripts():
        name = path.stem.removeprefix("bench_")
        if args.only and name not in args.only:
            continue
        t0 = time.perf_counter()
        with open(args.out / f"{name}.txt", "w") as out:
            rc = subprocess.run([sys.executable, str(path)], stdout=out, stderr=subprocess.STDOUT, env=env).returncode
        failed += rc != 0
        print(f"{name:<20} {time.perf_counter() - t0:8.1f} s  {'ok' if rc == 0 else f'FAILED (exit {rc})'}  "
              f"-> {args.out / (name + '.txt')}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
