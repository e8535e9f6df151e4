"""Garbage collection: blobs no version points to (what a crash between blob commit and row
commit leaves)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import select

from casemate.security.policy import User
from casemate.store import db
from casemate.workspace import Workspace


@dataclass
class GcReport:
    unreferenced: int = 0
    removed: int = 0
    bytes_freed: int = 0
    kept_recent: int = 0


def collect_garbage(ws: Workspace, actor: User, *, min_age_s: float = 3600.0, dry_run: bool = False) -> GcReport:
    """Remove unreferenced blobs older than `min_age_s` (admins only).

    A running ingest makes its blobs durable before it commits the rows that point to them: a
    young unreferenced blob may be one of those and must not be taken in between.
    """
    ws.users.require_admin(actor, "collect garbage")
    with ws.db.read() as conn:
        referenced = {r[0] for r in conn.execute(select(db.versions.c.sha256).distinct())}
    report = GcReport()
    now = time.time()
    for sha, path in ws.blobs.iter_stored():
        if sha in referenced:
            continue
        report.unreferenced += 1
        try:
            st = path.stat()
        except FileNotFoundError:
            continue
        if now - st.st_mtime < min_age_s:
            report.kept_recent += 1
            continue
        if not dry_run:
            path.unlink(missing_ok=True)
        report.removed += 1
        report.bytes_freed += st.st_size
    ws.audit.record(actor.name, "gc", None, {"removed": report.removed, "bytes": report.bytes_freed, "dry_run": dry_run})
    return report
