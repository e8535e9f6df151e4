"""The catalog: assets with immutable, labelled versions, lineage and label-filtered reads.

Every read goes through `casemate.security.policy.can_read`; a version the user may not read is
reported exactly like one that does not exist (`NotFound`).
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Row, TextClause, bindparam, select, text

from casemate.errors import NotFound, PermissionDenied, UsageError
from casemate.security.labels import BOTTOM, Label, format_label, lub, parse_label
from casemate.security.policy import User, can_read
from casemate.store import db
from casemate.store.blobs import StagedBlob

if TYPE_CHECKING:
    from casemate.workspace import Workspace

BASE_KINDS = ("document", "image", "audio", "telemetry", "other")
DERIVED_KINDS = (
    "detections", "transcript", "conversation", "mission", "model", "index",
    "annotation", "dataset", "evaluation", "finding", "change",
)
KINDS = BASE_KINDS + DERIVED_KINDS
MAX_PAGE = 1000
# Above this many readable labels a single IN query beats one sub-query per label.
UNION_LIMIT = 64


def new_id() -> str:
    """A random, unguessable id (60 bits, base32): ids reveal nothing about order or count."""
    return base64.b32encode(os.urandom(8)).decode().lower()[:12]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


@dataclass(frozen=True)
class Version:
    id: str
    asset_id: str
    sha256: str
    size: int
    kind: str
    label: Label
    name: str
    source_path: str | None
    created_by: str
    created_at: str
    metadata: dict[str, Any] = field(default_factory=dict)
    parents: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "asset_id": self.asset_id,
            "name": self.name,
            "kind": self.kind,
            "label": format_label(self.label),
            "sha256": self.sha256,
            "size": self.size,
            "source_path": self.source_path,
            "created_by": self.created_by,
            "created_at": self.created_at,
            "metadata": self.metadata,
            "parents": list(self.parents),
        }


@dataclass
class NewVersion:
    """A version ready to be inserted: its blob is staged, its label checked."""

    blob: StagedBlob
    name: str
    kind: str
    label: Label
    parents: tuple[int, ...] = ()
    parent_ids: tuple[str, ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict)
    text: str | None = None
    source_path: str | None = None
    source_key: str | None = None
    asset_pk: int | None = None
    action: str = "put"
    audit_detail: dict[str, Any] = field(default_factory=dict)


class Catalog:
    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        self._label_by_id: dict[int, Label] = {}
        self._id_by_text: dict[str, int] = {}

    # -- labels ------------------------------------------------------------------------------
    def _load_labels(self, conn: Connection | None = None) -> None:
        def load(c: Connection) -> None:
            for lid, label_text in c.execute(select(db.labels.c.id, db.labels.c.text)):
                if lid not in self._label_by_id:
                    self._label_by_id[lid] = parse_label(label_text)
                    self._id_by_text[label_text] = lid

        if conn is not None:
            load(conn)
        else:
            with self.ws.engine.connect() as c:
                load(c)

    def _label(self, label_id: int) -> Label:
        if label_id not in self._label_by_id:
            self._load_labels()
        return self._label_by_id[label_id]

    def _intern(self, conn: Connection, label: Label) -> int:
        text = format_label(label)
        lid = self._id_by_text.get(text)
        if lid is None:
            self._load_labels(conn)
            lid = self._id_by_text.get(text)
        if lid is None:
            lid = conn.execute(db.labels.insert().values(text=text)).inserted_primary_key[0]
            self._label_by_id[lid] = label
            self._id_by_text[text] = lid
        return lid

    def same_or_newer(self, existing: tuple[int, str, int], sha256: str, label: Label, what: str) -> bool:
        """For content arriving at a source already in the catalog (`existing` from `find_by_source`):
        True when it is unchanged (same content, same label); False when it makes a new version;
        UsageError when its label is below the one already there (only declassify goes down)."""
        old = self._label(existing[2])
        if existing[1] == sha256 and old == label:
            return True
        if not label.dominates(old):
            raise UsageError(
                f"{what} is already in the catalog labelled {format_label(old)}; a new version cannot carry "
                f"the lower label {format_label(label)} (an officer can `casemate declassify` it)"
            )
        return False

    def readable_label_ids(self, user: User) -> list[int]:
        """Ids of every label `user` may read: the filter applied before any row is fetched."""
        self._load_labels()
        return [lid for lid, label in self._label_by_id.items() if can_read(user, label)]

    # -- rows -> versions --------------------------------------------------------------------
    _cols = (
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

    def _select(self):  # type: ignore[no-untyped-def]
        return select(*self._cols).join(db.assets, db.assets.c.id == db.versions.c.asset_id)

    def _to_version(self, row: Row, parents: tuple[str, ...] = ()) -> Version:
        return Version(
            id=row.public_id,
            asset_id=row.asset_public_id,
            sha256=row.sha256,
            size=row.size,
            kind=row.kind,
            label=self._label(row.label_id),
            name=row.name,
            source_path=row.source_path,
            created_by=row.created_by,
            created_at=row.created_at,
            metadata=json.loads(row.metadata) if row.metadata and row.metadata != "{}" else {},
            parents=parents,
        )

    # Statements built once: the hot read paths only bind values.
    _q_parents = (
        select(db.versions.c.id, db.versions.c.public_id, db.versions.c.label_id)
        .join(db.lineage, db.lineage.c.parent_id == db.versions.c.id)
        .where(db.lineage.c.child_id == bindparam("pk"))
        .order_by(db.versions.c.id)
    )
    _q_by_public = (
        select(*_cols)
        .join(db.assets, db.assets.c.id == db.versions.c.asset_id)
        .where(db.versions.c.public_id == bindparam("pid"))
    )
    _q_by_pk = (
        select(*_cols).join(db.assets, db.assets.c.id == db.versions.c.asset_id).where(db.versions.c.id == bindparam("pk"))
    )

    def _parents_of(self, conn: Connection, pk: int) -> list[tuple[int, str, int]]:
        return [(r[0], r[1], r[2]) for r in conn.execute(self._q_parents, {"pk": pk})]

    def _visible_row(self, conn: Connection, user: User, version_id: str) -> Row | None:
        if not isinstance(version_id, str) or not version_id:
            return None
        row = conn.execute(self._q_by_public, {"pid": version_id}).first()
        if row is None:
            # An asset id names its newest version the user may read.
            asset = conn.execute(select(db.assets.c.id).where(db.assets.c.public_id == version_id)).first()
            if asset is None:
                return None
            allowed = self.readable_label_ids(user)
            if not allowed:
                return None
            row = conn.execute(
                self._select()
                .where(db.versions.c.asset_id == asset[0], db.versions.c.label_id.in_(allowed))
                .order_by(db.versions.c.id.desc())
                .limit(1)
            ).first()
            return row
        if not can_read(user, self._label(row.label_id)):
            return None
        return row

    def _resolve(self, user: User, version_id: str, action: str) -> tuple[Row, tuple[str, ...]]:
        with self.ws.engine.connect() as conn:
            row = self._visible_row(conn, user, version_id)
            if row is None:
                self.ws.audit.record(user.name, "refused", version_id, {"action": action})
                raise NotFound(version_id)
            parents = tuple(
                pid for _, pid, lid in self._parents_of(conn, row.id) if can_read(user, self._label(lid))
            )
        return row, parents

    # -- reads -------------------------------------------------------------------------------
    def get(self, user: User, version_id: str, *, audit: bool = True) -> Version:
        row, parents = self._resolve(user, version_id, "show")
        v = self._to_version(row, parents)
        if audit:
            self.ws.audit.record(user.name, "read", v.id, {"what": "metadata", "label": format_label(v.label)})
        return v

    def read_bytes(self, user: User, version_id: str) -> bytes:
        row, _ = self._resolve(user, version_id, "read")
        self.ws.audit.record(
            user.name, "read", row.public_id, {"what": "content", "label": format_label(self._label(row.label_id))}
        )
        return self.ws.blobs.read(row.sha256)

    def blob_path(self, user: User, version_id: str) -> Path:
        row, _ = self._resolve(user, version_id, "read")
        self.ws.audit.record(
            user.name, "read", row.public_id, {"what": "content", "label": format_label(self._label(row.label_id))}
        )
        return self.ws.blobs.path(row.sha256)

    def text(self, user: User, version_id: str) -> str | None:
        row, _ = self._resolve(user, version_id, "read")
        self.ws.audit.record(
            user.name, "read", row.public_id, {"what": "text", "label": format_label(self._label(row.label_id))}
        )
        with self.ws.engine.connect() as conn:
            return conn.execute(select(db.texts.c.text).where(db.texts.c.version_id == row.id)).scalar()

    def list(
        self,
        user: User,
        *,
        kind: str | None = None,
        limit: int = 50,
        before: str | None = None,
        audit: bool = True,
    ) -> list[Version]:
        """Versions `user` may read, newest first; `before` is the id of the last version of the previous page."""
        if kind is not None and kind not in KINDS:
            raise UsageError(f"unknown kind {kind!r}: use one of {', '.join(KINDS)}")
        if limit < 1 or limit > MAX_PAGE:
            raise UsageError(f"--limit must be between 1 and {MAX_PAGE}")
        allowed = self.readable_label_ids(user)
        if not allowed:
            return []
        with self.ws.engine.connect() as conn:
            before_pk = None
            if before is not None:
                row = self._visible_row(conn, user, before)
                if row is None:
                    raise NotFound(before)
                before_pk = row.id
            # The policy once more on what the query returned: a belt to the SQL filter's braces.
            rows = [r for r in self._page(conn, allowed, kind, limit, before_pk) if can_read(user, self._label(r.label_id))]
            parents = self._readable_parents(conn, user, [r.id for r in rows])
        versions = [self._to_version(r, parents.get(r.id, ())) for r in rows]
        if audit:
            self.ws.audit.record(user.name, "list", None, {"kind": kind, "count": len(versions)})
        return versions

    _q_by_pks = (
        select(*_cols)
        .join(db.assets, db.assets.c.id == db.versions.c.asset_id)
        .where(db.versions.c.id.in_(bindparam("pks", expanding=True)))
    )
    _page_sql: dict[tuple[int, bool, bool], TextClause] = {}

    @classmethod
    def _page_statement(cls, n_labels: int, by_kind: bool, paged: bool) -> TextClause:
        """Newest ids among `n_labels` labels (0: any label), as portable SQL built once per shape.

        One index range scan per readable label, each stopping after `limit` ids: the cost does not
        depend on how many versions the user may not read. Plain SQL because building the same
        union through the expression language costs more than running it.
        """
        key = (n_labels, by_kind, paged)
        stmt = cls._page_sql.get(key)
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
            stmt = cls._page_sql[key] = text(sql)
        return stmt

    def _page(self, conn: Connection, allowed: list[int], kind: str | None, limit: int, before_pk: int | None):  # type: ignore[no-untyped-def]
        """The newest `limit` readable versions: ids first, from covering indexes, then their rows."""
        params: dict[str, Any] = {"lim": limit}
        if kind is not None:
            params["kind"] = kind
        if before_pk is not None:
            params["before"] = before_pk
        if len(allowed) == len(self._label_by_id) and max(allowed) == len(allowed):
            # The user reads every label: no per-label scans. A label made since (a higher id) is
            # not assumed readable.
            stmt = self._page_statement(0, kind is not None, before_pk is not None)
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
            stmt = self._page_statement(len(allowed), kind is not None, before_pk is not None)
            params.update({f"l{i}": lid for i, lid in enumerate(allowed)})
            page_ids = [r[0] for r in conn.execute(stmt, params)]
        if not page_ids:
            return []
        rows = conn.execute(self._q_by_pks, {"pks": page_ids}).all()
        rows.sort(key=lambda r: r.id, reverse=True)
        return rows

    _q_parents_many = (
        select(db.lineage.c.child_id, db.versions.c.public_id, db.versions.c.label_id)
        .join(db.versions, db.versions.c.id == db.lineage.c.parent_id)
        .where(db.lineage.c.child_id.in_(bindparam("pks", expanding=True)))
        .order_by(db.lineage.c.child_id, db.versions.c.id)
    )

    def _readable_parents(self, conn: Connection, user: User, pks: list[int]) -> dict[int, tuple[str, ...]]:
        """Readable parents of many versions in one query (hidden parents are left out)."""
        if not pks:
            return {}
        rows = conn.execute(self._q_parents_many, {"pks": pks}).all()
        out: dict[int, list[str]] = {}
        for child, pid, lid in rows:
            if can_read(user, self._label(lid)):
                out.setdefault(child, []).append(pid)
        return {k: tuple(v) for k, v in out.items()}

    def iter_versions(self, user: User, *, kind: str | None = None, batch: int = 500) -> Iterator[Version]:
        """Every version `user` may read, oldest first (for indexers)."""
        allowed = self.readable_label_ids(user)
        if not allowed:
            return
        last = 0
        while True:
            with self.ws.engine.connect() as conn:
                q = self._select().where(db.versions.c.label_id.in_(allowed), db.versions.c.id > last)
                if kind is not None:
                    q = q.where(db.versions.c.kind == kind)
                rows = conn.execute(q.order_by(db.versions.c.id).limit(batch)).all()
                parents = self._readable_parents(conn, user, [r.id for r in rows])
            if not rows:
                return
            for r in rows:
                yield self._to_version(r, parents.get(r.id, ()))
            last = rows[-1].id

    def lineage(self, user: User, version_id: str) -> dict[str, Any]:
        """The ancestry tree of a version, through versions the user may read only.

        A hidden ancestor is left out entirely: not its id, name, label, nor that it exists.
        """
        row, _ = self._resolve(user, version_id, "lineage")
        self.ws.audit.record(
            user.name, "read", row.public_id, {"what": "lineage", "label": format_label(self._label(row.label_id))}
        )
        with self.ws.engine.connect() as conn:
            seen: set[int] = set()

            def node(r: Row, depth: int) -> dict[str, Any]:
                seen.add(r.id)
                out = {
                    "id": r.public_id,
                    "name": r.name,
                    "kind": r.kind,
                    "label": format_label(self._label(r.label_id)),
                    "parents": [],
                }
                if depth < 64:
                    for pk, _pid, lid in self._parents_of(conn, r.id):
                        if pk in seen or not can_read(user, self._label(lid)):
                            continue
                        prow = conn.execute(self._q_by_pk, {"pk": pk}).first()
                        if prow is not None:
                            out["parents"].append(node(prow, depth + 1))
                return out

            return node(row, 0)

    def versions_of_asset(self, user: User, asset_id: str) -> list[Version]:
        allowed = self.readable_label_ids(user)
        with self.ws.engine.connect() as conn:
            apk = conn.execute(select(db.assets.c.id).where(db.assets.c.public_id == asset_id)).scalar()
            if apk is None or not allowed:
                return []
            rows = conn.execute(
                self._select()
                .where(db.versions.c.asset_id == apk, db.versions.c.label_id.in_(allowed))
                .order_by(db.versions.c.id)
            ).all()
        return [self._to_version(r) for r in rows]

    # -- writes ------------------------------------------------------------------------------
    def check_label(self, user: User, label: str | Label | None, parents: Sequence[str] = ()) -> tuple[Label, tuple[int, ...]]:
        """The label a new version gets, and its parents' keys; refuses a label below its inputs'."""
        parent_pks: list[int] = []
        parent_labels: list[Label] = []
        if parents:
            with self.ws.engine.connect() as conn:
                for pid in parents:
                    row = self._visible_row(conn, user, pid)
                    if row is None:
                        raise NotFound(pid)
                    parent_pks.append(row.id)
                    parent_labels.append(self._label(row.label_id))
        bound = lub(parent_labels) if parent_labels else BOTTOM
        final = bound if label is None else parse_label(label)
        if not final.dominates(bound):
            raise UsageError(
                f"label {format_label(final)} is below {format_label(bound)}, the least upper bound of its "
                "inputs' labels: derived data carries at least its inputs' labels "
                "(only an officer's `casemate declassify` lowers a label)"
            )
        if not can_read(user, final):
            raise UsageError(
                f"label {format_label(final)} is above your clearance: you could not read what you store"
            )
        return final, tuple(parent_pks)

    def put(
        self,
        user: User,
        data: bytes | Path,
        *,
        name: str,
        kind: str,
        label: str | Label | None = None,
        parents: Sequence[str] = (),
        metadata: dict[str, Any] | None = None,
        text: str | None = None,
        source_path: str | None = None,
        asset_id: str | None = None,
        source_key: str | None = None,
    ) -> Version:
        """Store a new version (a new asset, or a new version of `asset_id`).

        With `source_key` (e.g. a resolved file path) the version joins the asset already holding
        that key, like ingest does: the same content with the same label returns the existing
        version instead of storing it again.
        """
        if kind not in KINDS:
            raise UsageError(f"unknown kind {kind!r}: use one of {', '.join(KINDS)}")
        if not name:
            raise UsageError("a version needs a name")
        final, parent_pks = self.check_label(user, label, parents)
        asset_pk = None
        if asset_id is not None:
            with self.ws.engine.connect() as conn:
                apk = conn.execute(select(db.assets.c.id).where(db.assets.c.public_id == asset_id)).scalar()
                allowed = self.readable_label_ids(user)
                visible = (
                    apk is not None
                    and conn.execute(
                        select(db.versions.c.id)
                        .where(db.versions.c.asset_id == apk, db.versions.c.label_id.in_(allowed))
                        .limit(1)
                    ).first()
                )
            if not visible:
                raise NotFound(asset_id)
            asset_pk = apk
        try:
            json.dumps(metadata or {})
        except (TypeError, ValueError) as exc:
            raise UsageError(f"metadata must be JSON-serialisable: {exc}") from None
        blob = self.ws.blobs.stage_file(data) if isinstance(data, Path) else self.ws.blobs.stage_bytes(bytes(data))
        if source_key is not None and asset_pk is None:
            existing = self.find_by_source(user, [source_key]).get(source_key)
            if existing is not None:
                try:
                    unchanged = self.same_or_newer(existing, blob.sha256, final, source_key)
                except UsageError:
                    self.ws.blobs.discard()
                    raise
                if unchanged:
                    self.ws.blobs.discard()
                    with self.ws.engine.connect() as conn:
                        row = conn.execute(
                            self._select()
                            .where(db.versions.c.asset_id == existing[0], db.versions.c.label_id == existing[2])
                            .order_by(db.versions.c.id.desc())
                            .limit(1)
                        ).first()
                    return self._to_version(row)
                asset_pk = existing[0]
        nv = NewVersion(
            blob=blob,
            name=name,
            kind=kind,
            label=final,
            parents=parent_pks,
            parent_ids=tuple(parents),
            metadata=dict(metadata or {}),
            text=text,
            source_path=source_path,
            source_key=source_key,
            asset_pk=asset_pk,
        )
        return self.insert_batch(user, [nv])[0]

    def children(self, user: User, version_id: str, *, kind: str | None = None) -> list[Version]:
        """Readable versions derived directly from `version_id` (NotFound if it is not readable)."""
        row, _ = self._resolve(user, version_id, "children")
        allowed = self.readable_label_ids(user)
        with self.ws.engine.connect() as conn:
            q = (
                self._select()
                .join(db.lineage, db.lineage.c.child_id == db.versions.c.id)
                .where(db.lineage.c.parent_id == row.id, db.versions.c.label_id.in_(allowed))
            )
            if kind is not None:
                q = q.where(db.versions.c.kind == kind)
            rows = conn.execute(q.order_by(db.versions.c.id)).all()
            parents = self._readable_parents(conn, user, [r.id for r in rows])
        return [self._to_version(r, parents.get(r.id, ())) for r in rows]

    def insert_batch(self, user: User, items: list[NewVersion], pool: Any = None) -> list[Version]:
        """Make staged blobs durable, then insert every version, its lineage, text and audit entry
        in one transaction. All or nothing."""
        if not items:
            return []
        try:
            self.ws.blobs.commit(pool)
        except BaseException:
            self.ws.blobs.discard()
            raise
        now = _now()
        out: list[Version] = []
        with self.ws.transaction() as conn:
            asset_rows = []
            new_assets: dict[int, str] = {}
            for i, it in enumerate(items):
                if it.asset_pk is None:
                    asset_rows.append({"public_id": new_id(), "source_key": it.source_key, "created_at": now})
                    new_assets[i] = asset_rows[-1]["public_id"]
            asset_pk_by_public: dict[str, int] = {}
            if asset_rows:
                conn.execute(db.assets.insert(), asset_rows)
                for pk, pub in conn.execute(
                    select(db.assets.c.id, db.assets.c.public_id).where(
                        db.assets.c.public_id.in_([r["public_id"] for r in asset_rows])
                    )
                ):
                    asset_pk_by_public[pub] = pk
            existing_assets = {it.asset_pk for it in items if it.asset_pk is not None}
            asset_public_by_pk: dict[int, str] = {}
            if existing_assets:
                for pk, pub in conn.execute(
                    select(db.assets.c.id, db.assets.c.public_id).where(db.assets.c.id.in_(existing_assets))
                ):
                    asset_public_by_pk[pk] = pub
            version_rows = []
            for i, it in enumerate(items):
                lid = self._intern(conn, it.label)
                if i in new_assets:
                    apub = new_assets[i]
                    apk = asset_pk_by_public[apub]
                else:
                    apk = it.asset_pk  # type: ignore[assignment]
                    apub = asset_public_by_pk[apk]
                vid = new_id()
                version_rows.append(
                    {
                        "public_id": vid,
                        "asset_id": apk,
                        "label_id": lid,
                        "sha256": it.blob.sha256,
                        "size": it.blob.size,
                        "kind": it.kind,
                        "name": it.name,
                        "source_path": it.source_path,
                        "created_by": user.name,
                        "created_at": now,
                        "metadata": json.dumps(it.metadata, sort_keys=True, ensure_ascii=False)
                        if it.metadata
                        else "{}",
                    }
                )
                out.append(
                    Version(
                        id=vid,
                        asset_id=apub,
                        sha256=it.blob.sha256,
                        size=it.blob.size,
                        kind=it.kind,
                        label=it.label,
                        name=it.name,
                        source_path=it.source_path,
                        created_by=user.name,
                        created_at=now,
                        metadata=it.metadata,
                        parents=it.parent_ids,
                    )
                )
                detail = {
                    "label": format_label(it.label),
                    "sha256": it.blob.sha256,
                    "kind": it.kind,
                    **({"parents": list(it.parent_ids)} if it.parent_ids else {}),
                    **it.audit_detail,
                }
                self.ws.audit.record(user.name, it.action, vid, detail)
            conn.execute(db.versions.insert(), version_rows)
            pk_by_public = dict(
                conn.execute(
                    select(db.versions.c.public_id, db.versions.c.id).where(
                        db.versions.c.public_id.in_([r["public_id"] for r in version_rows])
                    )
                ).all()
            )
            text_rows = []
            lineage_rows = []
            for it, v in zip(items, out, strict=True):
                pk = pk_by_public[v.id]
                if it.text is not None:
                    text_rows.append({"version_id": pk, "text": it.text})
                for ppk in dict.fromkeys(it.parents):
                    lineage_rows.append({"child_id": pk, "parent_id": ppk})
            if text_rows:
                conn.execute(db.texts.insert(), text_rows)
            if lineage_rows:
                conn.execute(db.lineage.insert(), lineage_rows)
        return out

    def declassify(self, user: User, version_id: str, to: str | Label, reason: str) -> Version:
        """The only way down: an officer re-labels a version lower, as a new version of the asset."""
        row, _ = self._resolve(user, version_id, "declassify")
        if not user.has_role("officer"):
            self.ws.audit.record(user.name, "refused", row.public_id, {"action": "declassify", "reason": "not officer"})
            self.ws.flush()
            raise PermissionDenied("only a user with role officer can declassify")
        if not reason or not reason.strip():
            raise UsageError("--reason is required: say why this may be declassified")
        new = parse_label(to)
        old = self._label(row.label_id)
        if new == old or new.dominates(old):
            raise UsageError(
                f"{format_label(new)} is not lower than {format_label(old)}: declassify only lowers a label"
            )
        if not old.dominates(new):
            raise UsageError(
                f"{format_label(new)} is not below {format_label(old)} (different compartments): "
                "a declassification may only drop level or compartments"
            )
        with self.ws.engine.connect() as conn:
            text = conn.execute(select(db.texts.c.text).where(db.texts.c.version_id == row.id)).scalar()
        meta = json.loads(row.metadata) if row.metadata else {}
        meta["declassified"] = {"from": format_label(old), "reason": reason.strip(), "by": user.name}
        nv = NewVersion(
            blob=StagedBlob(row.sha256, row.size),
            name=row.name,
            kind=row.kind,
            label=new,
            parents=(row.id,),
            parent_ids=(row.public_id,),
            metadata=meta,
            text=text,
            source_path=row.source_path,
            asset_pk=self._asset_pk(row.public_id),
            action="declassify",
            audit_detail={"from": format_label(old), "reason": reason.strip()},
        )
        return self.insert_batch(user, [nv])[0]

    def _asset_pk(self, version_public_id: str) -> int:
        with self.ws.engine.connect() as conn:
            return conn.execute(
                select(db.versions.c.asset_id).where(db.versions.c.public_id == version_public_id)
            ).scalar_one()

    def find_by_source(self, user: User, source_keys: Sequence[str]) -> dict[str, tuple[int, str, int]]:
        """For each source key, the newest version the user may read: (asset pk, sha256, label id)."""
        allowed = set(self.readable_label_ids(user))
        out: dict[str, tuple[int, str, int]] = {}
        if not source_keys or not allowed:
            return out
        with self.ws.engine.connect() as conn:
            for start in range(0, len(source_keys), 500):
                chunk = list(source_keys[start : start + 500])
                rows = conn.execute(
                    select(db.assets.c.source_key, db.assets.c.id, db.versions.c.sha256, db.versions.c.label_id)
                    .join(db.versions, db.versions.c.asset_id == db.assets.c.id)
                    .where(db.assets.c.source_key.in_(chunk))
                    .order_by(db.versions.c.id)
                ).all()
                for key, apk, sha, lid in rows:
                    if lid in allowed:
                        out[key] = (apk, sha, lid)  # later rows are newer
        return out


@dataclass
class GcReport:
    unreferenced: int = 0
    removed: int = 0
    bytes_freed: int = 0
    kept_recent: int = 0


def collect_garbage(ws: Workspace, actor: User, *, min_age_s: float = 3600.0, dry_run: bool = False) -> GcReport:
    """Remove blobs no version points to (what a crash between blob commit and row commit leaves).

    Only blobs older than `min_age_s` go: a running ingest makes its blobs durable before it commits
    the rows that point to them, and such a blob must not be taken in between.
    """
    import time

    if not actor.has_role("admin"):
        raise PermissionDenied("only an admin can collect garbage")
    with ws.engine.connect() as conn:
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
    ws.flush()
    return report
