"""The console's filtered catalog list, done in SQL (not in Python after the fetch).

The catalog's `list` filters by kind only; the console's list also filters by exact label, part of
the name and creation date. This builds one query over the catalog's tables with the same read
filter the catalog applies (the readable label ids, `Catalog.readable_label_ids`), then applies the
policy once more to what came back (`can_read`), exactly as `Catalog.list` does. A version the user
may not read is never a row of the answer, and a cursor naming one is answered like a missing one.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from sqlalchemy import and_, func, select

from casemate.catalog import queries as sql
from casemate.catalog.models import Version
from casemate.errors import NotFound, UsageError
from casemate.security.labels import Label
from casemate.security.policy import User, can_read
from casemate.store import db
from casemate.workspace import Workspace


@dataclass(frozen=True)
class ListFilter:
    kind: str | None = None
    label: Label | None = None  # exactly this label
    name: str | None = None  # part of the name, any case
    since: str | None = None  # created at or after (ISO date or time)
    until: str | None = None  # created before

    @property
    def empty(self) -> bool:
        return not (self.kind or self.label or self.name or self.since or self.until)


def _like(part: str) -> str:
    """A LIKE pattern matching `part` anywhere, its own wildcards taken literally."""
    esc = part.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{esc}%"


def _iso_day(value: str | None, field: str) -> str | None:
    """An ISO date (YYYY-MM-DD) or date-time, checked; created_at is stored as ISO text (compared as text)."""
    if value is None or not value.strip():
        return None
    from datetime import datetime

    v = value.strip()
    try:
        datetime.fromisoformat(v)
    except ValueError:
        raise UsageError(f"{field}: {value!r} is not a date: use YYYY-MM-DD") from None
    return v


def list_versions(ws: Workspace, user: User, flt: ListFilter, *, limit: int = 50,
                  before: str | None = None, audit: bool = True) -> tuple[list[Version], str | None]:
    """Versions `user` may read matching `flt`, newest first, and the cursor of the next page (None: last)."""
    cat = ws.catalog
    since = _iso_day(flt.since, "since")
    until = _iso_day(flt.until, "until")
    if flt.label is None and not flt.name and not since and not until:
        # kind alone: the catalog's own list (one index range scan per readable label)
        page = cat.list(user, kind=flt.kind, limit=limit, before=before, audit=audit)
        return page, (page[-1].id if len(page) == limit else None)
    allowed = cat.readable_label_ids(user)
    if flt.label is not None:
        # an exact label: its one id, and only if readable (an unreadable label finds nothing)
        allowed = [lid for lid in allowed if cat.labels.label(lid) == flt.label]
    if not allowed:
        return [], None
    v = db.versions.c
    with cat.db.read() as conn:
        # one label: its index range, newest first, no sort. Several: the primary key's range, newest
        # first, the labels checked per row ("+ 0" keeps SQLite off the label index, which would
        # fetch every row of the window through it and sort them: twice as slow, measured)
        conds = [(v.label_id + 0).in_(allowed)] if len(allowed) > 1 else [v.label_id == allowed[0]]
        if before is not None and before.startswith(POSITION):
            upper = _position(before)
        elif before is not None:
            row = conn.execute(select(v.id, v.label_id).where(v.public_id == before)).first()
            if row is None or not can_read(user, cat.labels.label(row.label_id)):
                raise NotFound(before)  # a hidden cursor is a missing one
            upper = row.id
        else:
            upper = (conn.execute(select(func.max(v.id))).scalar() or 0) + 1
        # one window of ids per request: a sparse filter reads at most WINDOW rows, then hands back
        # a cursor to go on from (the page follows it); a dense one stops at `limit` matches
        floor = max(0, upper - WINDOW)
        conds += [v.id < upper, v.id >= floor]
        if flt.kind is not None:
            conds.append(v.kind == flt.kind)
        if flt.name:
            # SQLite's LIKE already ignores ASCII case (its lower() folds no more than that)
            name = v.name if conn.dialect.name == "sqlite" else func.lower(v.name)
            conds.append(name.like(_like(flt.name), escape="\\"))
        if since:
            conds.append(v.created_at >= since)
        if until:
            conds.append(v.created_at < until)
        ids = [r[0] for r in conn.execute(select(v.id).where(and_(*conds)).order_by(v.id.desc()).limit(limit))]
        rows = conn.execute(sql.BY_PKS, {"pks": ids}).all() if ids else []
        rows.sort(key=lambda r: r.id, reverse=True)
        # the policy once more on what the query returned, as Catalog.list does
        rows = [r for r in rows if can_read(user, cat.labels.label(r.label_id))]
        parents = _readable_parents(conn, user, cat, [r.id for r in rows])
    versions = [sql.to_version(r, cat.labels.label(r.label_id), parents.get(r.id, ())) for r in rows]
    if audit:
        ws.audit.record(user.name, "list", None, {"kind": flt.kind, "count": len(versions), "filtered": not flt.empty})
    if len(ids) == limit:
        return versions, _token(ids[-1])  # a full page: the next starts below its last row
    return versions, (_token(floor) if floor > 1 else None)  # the window read: go on below it, if any


# A cursor in the middle of the catalog, where no version the reader may see need be: an opaque token
# (the id position encrypted with this process's key, so it says nothing of how many versions exist).
POSITION = "~"
WINDOW = 200_000  # ids read per filtered request at most (measured: docs/benchmarks.md, Console)
_KEY = os.urandom(16)


def _token(pk: int) -> str:
    block = pk.to_bytes(8, "big") + b"\0" * 8
    enc = Cipher(algorithms.AES(_KEY), modes.ECB()).encryptor()
    return POSITION + base64.urlsafe_b64encode(enc.update(block) + enc.finalize()).decode().rstrip("=")


def _position(token: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(token[len(POSITION):] + "==")
        dec = Cipher(algorithms.AES(_KEY), modes.ECB()).decryptor()
        block = dec.update(raw) + dec.finalize() if len(raw) == 16 else b""
    except ValueError:
        block = b""
    if len(block) != 16 or block[8:] != b"\0" * 8:
        raise UsageError("before: this page cursor is not valid here (the server restarted?): reload the list")
    return int.from_bytes(block[:8], "big")


def _readable_parents(conn: object, user: User, cat: object, pks: list[int]) -> dict[int, tuple[str, ...]]:
    if not pks:
        return {}
    out: dict[int, list[str]] = {}
    for child, pid, lid in conn.execute(sql.PARENTS_MANY, {"pks": pks}).all():  # type: ignore[attr-defined]
        if can_read(user, cat.labels.label(lid)):  # type: ignore[attr-defined]
            out.setdefault(child, []).append(pid)
    return {k: tuple(p) for k, p in out.items()}
