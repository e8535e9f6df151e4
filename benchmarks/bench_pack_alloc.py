"""Allocation quality and speed: CBBA vs the Hungarian optimum, convergence at 200 x 1,000, 30% loss.

Run: OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_pack_alloc.py [--instances 40]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from scipy.spatial import cKDTree

from casemate.pack.allocation import CBBA, CBBAConfig, greedy_assignment, hungarian, score_matrix


def instance(seed: int, n: int, m: int, radio: float):
    r = np.random.default_rng(seed)
    pos = r.uniform(0, 1000, (n, 2))
    tasks = r.uniform(0, 1000, (m, 2))
    value = r.uniform(1, 2, m)
    pairs = cKDTree(pos).query_pairs(radio, output_type="ndarray")
    return pos, tasks, value, np.r_[pairs[:, 0], pairs[:, 1]], np.r_[pairs[:, 1], pairs[:, 0]]


def run(pos, tasks, value, src, dst, bundle: int, loss: float, seed: int):
    n, m = len(pos), len(tasks)
    cb = CBBA(n, CBBAConfig(bundle_size=bundle))
    cb.add_tasks(tasks, value, np.ones((n, m), dtype=bool))
    rng = np.random.default_rng(seed)

    def links(_k: int):
        keep = rng.random(len(src)) >= loss
        return src[keep], dst[keep]

    t0 = time.perf_counter()
    rounds = cb.run(pos, np.full(n, 10.0), np.ones(n, dtype=bool), links)
    return cb, rounds, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--instances", type=int, default=40)
    ap.add_argument("--big", type=int, default=3)
    a = ap.parse_args()
    ratios, greedy_r, loss_ratio, round_ratio, conflicts = [], [], [], [], 0
    for s in range(a.instances):
        pos, tasks, value, src, dst = instance(s, 100, 100, 250.0)
        sp = np.full(100, 10.0)
        S = score_matrix(pos, sp, tasks, value, 0.01)
        _, opt = hungarian(S)
        _, gr = greedy_assignment(S)
        cb, r0, _ = run(pos, tasks, value, src, dst, 1, 0.0, s)
        lo, r1, _ = run(pos, tasks, value, src, dst, 1, 0.3, s + 1000)
        ratios.append(cb.total_score(pos, sp) / opt)
        greedy_r.append(gr / opt)
        loss_ratio.append(lo.total_score(pos, sp) / cb.total_score(pos, sp))
        round_ratio.append(r1 / r0)
        conflicts += lo.conflicts()
    ratios = np.array(ratios)
    big = []
    for s in range(a.big):
        pos, tasks, value, src, dst = instance(100 + s, 200, 1000, 250.0)
        cb, rounds, secs = run(pos, tasks, value, src, dst, 5, 0.0, s)
        lo, rl, secl = run(pos, tasks, value, src, dst, 5, 0.3, s)
        sp = np.full(200, 10.0)
        big.append({"rounds": rounds, "seconds": round(secs, 2), "conflicts": cb.conflicts(),
                    "loss30_rounds": rl, "loss30_seconds": round(secl, 2), "loss30_conflicts": lo.conflicts(),
                    "loss30_score_ratio": round(lo.total_score(pos, sp) / cb.total_score(pos, sp), 4)})
    print(json.dumps({
        "cbba_vs_hungarian_100x100": {"instances": a.instances, "mean": round(float(ratios.mean()), 4),
                                      "worst_5pct": round(float(np.quantile(ratios, 0.05)), 4),
                                      "min": round(float(ratios.min()), 4),
                                      "greedy_mean": round(float(np.mean(greedy_r)), 4)},
        "loss30_100x100": {"score_ratio_min": round(float(np.min(loss_ratio)), 4),
                           "score_ratio_mean": round(float(np.mean(loss_ratio)), 4),
                           "rounds_ratio_median": round(float(np.median(round_ratio)), 2),
                           "rounds_ratio_max": round(float(np.max(round_ratio)), 2), "conflicts": conflicts},
        "converge_200x1000_bundle5": big,
    }, indent=1))


if __name__ == "__main__":
    main()
