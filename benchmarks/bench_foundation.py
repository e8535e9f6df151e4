"""Foundation benchmarks: ingest throughput, audit verification speed, label-filtered paging.

    .venv/bin/python benchmarks/bench_foundation.py [--files 10000] [--versions 1000000]

Prints one JSON object; the figures go into docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

from casemate.catalog.ingest import ingest  # noqa: E402
from casemate.catalog.models import new_id  # noqa: E402
from casemate.security.labels import Label, Level, format_label  # noqa: E402
from casemate.security.policy import User  # noqa: E402
from casemate.store import db  # noqa: E402
from casemate.workspace import Workspace  # noqa: E402


def bench_ingest(root: Path, n_files: int) -> dict:
    src = root / "src"
    for d in range(n_files // 1000 + 1):
        (src / f"d{d}").mkdir(parents=True, exist_ok=True)
    rng = random.Random(1)
    words = "rapport mission secteur patrouille véhicule navire aéronef observation".split()
    for i in range(n_files):
        text = " ".join(rng.choice(words) for _ in range(rng.randint(20, 120)))
        (src / f"d{i // 1000}" / f"note-{i:06d}.txt").write_text(f"{i} {text}\n")
    ws = Workspace.init(root / "ws")
    admin = ws.acting_user("admin")
    t0 = time.perf_counter()
    report = ingest(ws, admin, [src], "DR", run_hooks=False)
    dt = time.perf_counter() - t0
    assert len(report.ingested) == n_files, report.summary()
    t0 = time.perf_counter()
    again = ingest(ws, admin, [src], "DR", run_hooks=False)
    dt_again = time.perf_counter() - t0
    assert not again.ingested
    ws.close()
    return {
        "files": n_files,
        "seconds": round(dt, 3),
        "files_per_s": round(n_files / dt),
        "rerun_skip_files_per_s": round(n_files / dt_again),
    }


def bench_verify(root: Path, n_entries: int) -> dict:
    ws = Workspace.init(root / "audit-ws")
    batch = 20_000
    done = 0
    while done < n_entries:
        with ws.unit():  # one transaction per batch when the unit closes
            for _ in range(min(batch, n_entries - done)):
                ws.audit.record("analyst", "read", new_id(), {"what": "content", "label": "DR"})
        done += batch
    ws.close()
    ws = Workspace.open(root / "audit-ws")
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        result = ws.audit.verify()
        times.append(time.perf_counter() - t0)
        assert result.ok, result
    ws.close()
    med = statistics.median(times)
    return {"entries": result.entries, "checkpoints": result.checkpoints, "median_s": round(med, 3),
            "entries_per_s": round(result.entries / med)}


def bench_paging(root: Path, n_versions: int) -> dict:
    ws = Workspace.init(root / "page-ws")
    rng = random.Random(2)
    comps = ["ALPHA", "BRAVO", "CHARLIE", "DELTA"]
    # 40 distinct labels, skewed like a real catalog: most NP/DR, a long tail of compartments.
    labels = [Label(Level(lv), frozenset(c)) for lv in range(4) for c in ([], ["ALPHA"], ["BRAVO"], ["ALPHA", "BRAVO"],
              ["CHARLIE"], ["DELTA"], ["CHARLIE", "DELTA"], ["ALPHA", "CHARLIE"], ["BRAVO", "DELTA"], ["ALPHA", "DELTA"])]
    weights = [50 if not lb.compartments and lb.level <= 1 else (10 if not lb.compartments else 1) for lb in labels]
    now = "2026-11-23T00:00:00+00:00"
    with ws.transaction() as conn:
        ids = []
        for lb in labels:
            ids.append(conn.execute(db.labels.insert().values(text=format_label(lb))).inserted_primary_key[0])
    step = 50_000
    for start in range(0, n_versions, step):
        n = min(step, n_versions - start)
        with ws.transaction() as conn:
            conn.execute(db.assets.insert(), [{"id": start + i + 1, "public_id": new_id(), "source_key": None,
                                               "created_at": now} for i in range(n)])
            picks = rng.choices(range(len(labels)), weights=weights, k=n)
            conn.execute(db.versions.insert(), [
                {"id": start + i + 1, "public_id": new_id(), "asset_id": start + i + 1, "label_id": ids[picks[i]],
                 "sha256": "0" * 64, "size": 100, "kind": "document" if i % 3 else "image",
                 "name": f"doc-{start + i}", "source_path": None, "created_by": "bench", "created_at": now,
                 "metadata": "{}"} for i in range(n)])
    ws.close()
    ws = Workspace.open(root / "page-ws")
    users = {
        "TS, all compartments (reads 100%)": Label(Level.TS, frozenset(comps)),
        "DR, no compartment (reads ~70%)": Label(Level.DR),
        "TS//DELTA (reads ~93%)": Label(Level.TS, frozenset(["DELTA"])),
        "NP//CHARLIE (reads ~38%)": Label(Level.NP, frozenset(["CHARLIE"])),
    }
    out = {}
    for name, clearance in users.items():
        user = User("bench", clearance, frozenset())
        for _ in range(5):  # warm the page cache and the label cache
            ws.catalog.list(user, limit=50, audit=False)
        lat = []
        before = None
        for i in range(400):
            kind = "image" if i % 4 == 3 else None
            t0 = time.perf_counter()
            page = ws.catalog.list(user, limit=50, kind=kind, before=before if i % 10 else None, audit=False)
            lat.append((time.perf_counter() - t0) * 1000)
            before = page[-1].id if page else None
        lat.sort()
        out[name] = {"median_ms": round(statistics.median(lat), 2), "p99_ms": round(lat[int(len(lat) * 0.99) - 1], 2)}
    ws.close()
    return {"versions": n_versions, "labels": len(labels), "pages": out}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=10_000)
    ap.add_argument("--entries", type=int, default=400_000)
    ap.add_argument("--versions", type=int, default=1_000_000)
    ap.add_argument("--only", choices=["ingest", "verify", "paging"], default=None)
    args = ap.parse_args()
    results = {}
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        root = Path(tmp)
        if args.only in (None, "ingest"):
            results["ingest"] = bench_ingest(root, args.files)
            print(json.dumps({"ingest": results["ingest"]}), file=sys.stderr)
        if args.only in (None, "verify"):
            results["audit_verify"] = bench_verify(root, args.entries)
            print(json.dumps({"audit_verify": results["audit_verify"]}), file=sys.stderr)
        if args.only in (None, "paging"):
            results["paging"] = bench_paging(root, args.versions)
    print(json.dumps(results, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
