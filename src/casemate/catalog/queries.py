"""The catalog's SQL: statements built once (hot read paths only bind values) and paging."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Connection, Row, Select, TextClause, bindparam, select, text

from casemate.catalog.models import Version
from casemate.security.labels import Label
from casemate.store import db

# Above this many readable labels a single IN query beats one sub-query per label.
UNION_LIMIT = 64

COLUMNS = (
    db.versions.c.id,
    db.versions.c.public_id,
    db.assets.c.public_id.label("asset_public_id"),
    db.versions.c.sha256,
    db.versions.c.size,
    db.versions.c.kind,
    db.versions.c.label_id,
    db.versions.c.name,
    db.versions.c.source_path,
    db.versions.c.created_by,
    db.versions.c.created_at,
    db.versions.c.metadata,
)


def select_versions() -> Select:
    return select(*COLUMNS).join(db.assets, db.assets.c.id == db.versions.c.asset_id)


PARENTS = (
    select(db.versions.c.id, db.versions.c.public_id, db.versions.c.label_id)
    .join(db.lineage, db.lineage.c.parent_id == db.versions.c.id)
    .where(db.lineage.c.child_id == bindparam("pk"))
    .order_by(db.versions.c.id)
)
PARENTS_MANY = (
    select(db.lineage.c.child_id, db.versions.c.public_id, db.versions.c.label_id)
    .join(db.versions, db.versions.c.id == db.lineage.c.parent_id)
    .where(db.lineage.c.child_id.in_(bindparam("pks", expanding=True)))
    .order_by(db.lineage.c.child_id, db.versions.c.id)
)
BY_PUBLIC = select_versions().where(db.versions.c.public_id == bindparam("pid"))
BY_PK = select_versions().where(db.versions.c.id == bindparam("pk"))
BY_PKS = select_versions().where(db.versions.c.id.in_(bindparam("pks", expanding=True)))
TEXT_OF = select(db.texts.c.text).where(db.texts.c.version_id == bindparam("pk"))


def to_version(row: Row, label: Label, parents: tuple[str, ...] = ()) -> Version:
    return Version(
        id=row.public_id,
        asset_id=row.asset_public_id,
        sha256=row.sha256,
        size=row.size,
        kind=row.kind,
        label=label,
        name=row.name,
        source_path=row.source_path,
        created_by=row.created_by,
        created_at=row.created_at,
        metadata=json.loads(row.metadata) if row.metadata and row.metadata != "{}" else {},
        parents=parents,
    )


_page_sql: dict[tuple[int, bool, bool], TextClause] = {}


def page_statement(n_labels: int, by_kind: bool, paged: bool) -> TextClause:
    """Newest ids among `n_labels` labels (0: any label), as portable SQL built once per shape.

    One index range scan per readable label, each stopping after `limit` ids: the cost does not
    depend on how many versions the user may not read. Plain SQL because building the same
    union through the expression language costs more than running it.
    """
    key = (n_labels, by_kind, paged)
    stmt = _page_sql.get(key)
    if stmt is None:
        extra = (" AND kind = :kind" if by_kind else "") + (" AND id < :before" if paged else "")
        if n_labels == 0:  # every label known when the user's labels were computed is readable
            sql = f"SELECT id FROM versions WHERE label_id <= :maxlid{extra} ORDER BY id DESC LIMIT :lim"
        else:
            parts = [
                f"SELECT id FROM (SELECT id FROM versions WHERE label_id = :l{i}{extra} "
                f"ORDER BY id DESC LIMIT :lim) AS s{i}"
                for i in range(n_labels)
            ]
            sql = f"SELECT id FROM ({' UNION ALL '.join(parts)}) AS u ORDER BY id DESC LIMIT :lim"
        stmt = _page_sql[key] = text(sql)
    return stmt


def page(
    conn: Connection, allowed: list[int], n_known: int, kind: str | None, limit: int, before_pk: int | None
) -> list[Row]:
    """The newest `limit` versions among `allowed` label ids: ids first, from covering indexes,
    then their rows. `n_known` is how many labels exist (all readable: no per-label scans)."""
    params: dict[str, Any] = {"lim": limit}
    if kind is not None:
        params["kind"] = kind
    if before_pk is not None:
        params["before"] = before_pk
    if len(allowed) == n_known and max(allowed) == len(allowed):
        # The user reads every label: no per-label scans. A label made since (a higher id) is
        # not assumed readable.
        stmt = page_statement(0, kind is not None, before_pk is not None)
        page_ids = [r[0] for r in conn.execute(stmt, {**params, "maxlid": max(allowed)})]
    elif len(allowed) > UNION_LIMIT:
        v = db.versions.c
        q = select(v.id).where(v.label_id.in_(allowed))
        if kind is not None:
            q = q.where(v.kind == kind)
        if before_pk is not None:
            q = q.where(v.id < before_pk)
        page_ids = [r[0] for r in conn.execute(q.order_by(v.id.desc()).limit(limit))]
    else:
        stmt = page_statement(len(allowed), kind is not None, before_pk is not None)
        params.update({f"l{i}": lid for i, lid in enumerate(allowed)})
        page_ids = [r[0] for r in conn.execute(stmt, params)]
    if not page_ids:
        return []
    rows = conn.execute(BY_PKS, {"pks": page_ids}).all()
    rows.sort(key=lambda r: r.id, reverse=True)
    return rows
