"""The catalog: assets with immutable, labelled versions, lineage and label-filtered reads.

Every read goes through `casemate.security.policy.can_read`; a version the user may not read is
reported exactly like one that does not exist (`NotFound`). Each public method runs in one unit of
work (`casemate.store.unit`): its reads, its write transaction and its audit entries together.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from sqlalchemy import Connection, Row, select

from casemate.catalog import queries as sql
from casemate.catalog.labels import LabelRegistry
from casemate.catalog.models import KINDS, MAX_PAGE, NewVersion, Version, new_id
from casemate.catalog.models import now as _now
from casemate.errors import NotFound, PermissionDenied, UsageError
from casemate.security.audit import AuditLog
from casemate.security.labels import BOTTOM, Label, format_label, lub, parse_label
from casemate.security.policy import User, can_read
from casemate.store import db
from casemate.store.blobs import FileBlobStore, StagedBlob
from casemate.store.unit import Database

__all__ = ["KINDS", "Catalog", "NewVersion", "Version"]

P = ParamSpec("P")
R = TypeVar("R")


def _in_unit(fn: Callable[P, R]) -> Callable[P, R]:
    """Run a Catalog method in one unit of work (joining the caller's, if any)."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with args[0].db.unit():  # type: ignore[attr-defined]
            return fn(*args, **kwargs)

    return wrapper


class Catalog:
    def __init__(self, database: Database, blobs: FileBlobStore, labels: LabelRegistry, audit: AuditLog) -> None:
        self.db = database
        self.blobs = blobs
        self.labels = labels
        self.audit = audit

    # -- labels ------------------------------------------------------------------------------
    def _label(self, label_id: int) -> Label:
        return self.labels.label(label_id)

    def same_or_newer(self, existing: tuple[int, str, int], sha256: str, label: Label, what: str) -> bool:
        return self.labels.same_or_newer(existing, sha256, label, what)

    def readable_label_ids(self, user: User) -> list[int]:
        return self.labels.readable_ids(user)

    # -- rows -> versions --------------------------------------------------------------------
    def _to_version(self, row: Row, parents: tuple[str, ...] = ()) -> Version:
        return sql.to_version(row, self._label(row.label_id), parents)

    def _parents_of(self, conn: Connection, pk: int) -> list[tuple[int, str, int]]:
        return [(r[0], r[1], r[2]) for r in conn.execute(sql.PARENTS, {"pk": pk})]

    def _visible_row(self, conn: Connection, user: User, version_id: str) -> Row | None:
        if not isinstance(version_id, str) or not version_id:
            return None
        row = conn.execute(sql.BY_PUBLIC, {"pid": version_id}).first()
        if row is None:
            # An asset id names its newest version the user may read.
            asset = conn.execute(select(db.assets.c.id).where(db.assets.c.public_id == version_id)).first()
            if asset is None:
                return None
            allowed = self.readable_label_ids(user)
            if not allowed:
                return None
            row = conn.execute(
                sql.select_versions()
                .where(db.versions.c.asset_id == asset[0], db.versions.c.label_id.in_(allowed))
                .order_by(db.versions.c.id.desc())
                .limit(1)
            ).first()
            return row
        if not can_read(user, self._label(row.label_id)):
            return None
        return row

    def _resolve(self, user: User, version_id: str, action: str) -> tuple[Row, tuple[str, ...]]:
        with self.db.read() as conn:
            row = self._visible_row(conn, user, version_id)
            if row is None:
                self.audit.record(user.name, "refused", version_id, {"action": action})
                raise NotFound(version_id)
            parents = tuple(
                pid for _, pid, lid in self._parents_of(conn, row.id) if can_read(user, self._label(lid))
            )
        return row, parents

    # -- reads -------------------------------------------------------------------------------
    @_in_unit
    def get(self, user: User, version_id: str, *, audit: bool = True) -> Version:
        row, parents = self._resolve(user, version_id, "show")
        v = self._to_version(row, parents)
        if audit:
            self.audit.record(user.name, "read", v.id, {"what": "metadata", "label": format_label(v.label)})
        return v

    @_in_unit
    def read_bytes(self, user: User, version_id: str) -> bytes:
        row, _ = self._resolve(user, version_id, "read")
        self.audit.record(
            user.name, "read", row.public_id, {"what": "content", "label": format_label(self._label(row.label_id))}
        )
        return self.blobs.read(row.sha256)

    @_in_unit
    def blob_path(self, user: User, version_id: str) -> Path:
        row, _ = self._resolve(user, version_id, "read")
        self.audit.record(
            user.name, "read", row.public_id, {"what": "content", "label": format_label(self._label(row.label_id))}
        )
        return self.blobs.path(row.sha256)

    @_in_unit
    def text(self, user: User, version_id: str) -> str | None:
        row, _ = self._resolve(user, version_id, "read")
        self.audit.record(
            user.name, "read", row.public_id, {"what": "text", "label": format_label(self._label(row.label_id))}
        )
        with self.db.read() as conn:
            return conn.execute(select(db.texts.c.text).where(db.texts.c.version_id == row.id)).scalar()

    @_in_unit
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
        with self.db.read() as conn:
            before_pk = None
            if before is not None:
                row = self._visible_row(conn, user, before)
                if row is None:
                    raise NotFound(before)
                before_pk = row.id
            # The policy once more on what the query returned: a belt to the SQL filter's braces.
            page = sql.page(conn, allowed, len(self.labels.known()), kind, limit, before_pk)
            rows = [r for r in page if can_read(user, self._label(r.label_id))]
            parents = self._readable_parents(conn, user, [r.id for r in rows])
        versions = [self._to_version(r, parents.get(r.id, ())) for r in rows]
        if audit:
            self.audit.record(user.name, "list", None, {"kind": kind, "count": len(versions)})
        return versions

    def _readable_parents(self, conn: Connection, user: User, pks: list[int]) -> dict[int, tuple[str, ...]]:
        """Readable parents of many versions in one query (hidden parents are left out)."""
        if not pks:
            return {}
        rows = conn.execute(sql.PARENTS_MANY, {"pks": pks}).all()
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
            with self.db.read() as conn:
                q = sql.select_versions().where(db.versions.c.label_id.in_(allowed), db.versions.c.id > last)
                if kind is not None:
                    q = q.where(db.versions.c.kind == kind)
                rows = conn.execute(q.order_by(db.versions.c.id).limit(batch)).all()
                parents = self._readable_parents(conn, user, [r.id for r in rows])
            if not rows:
                return
            for r in rows:
                yield self._to_version(r, parents.get(r.id, ()))
            last = rows[-1].id

    @_in_unit
    def lineage(self, user: User, version_id: str) -> dict[str, Any]:
        """The ancestry tree of a version, through versions the user may read only.

        A hidden ancestor is left out entirely: not its id, name, label, nor that it exists.
        """
        row, _ = self._resolve(user, version_id, "lineage")
        self.audit.record(
            user.name, "read", row.public_id, {"what": "lineage", "label": format_label(self._label(row.label_id))}
        )
        with self.db.read() as conn:
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
                        prow = conn.execute(sql.BY_PK, {"pk": pk}).first()
                        if prow is not None:
                            out["parents"].append(node(prow, depth + 1))
                return out

            return node(row, 0)

    @_in_unit
    def versions_of_asset(self, user: User, asset_id: str) -> list[Version]:
        allowed = self.readable_label_ids(user)
        with self.db.read() as conn:
            apk = conn.execute(select(db.assets.c.id).where(db.assets.c.public_id == asset_id)).scalar()
            if apk is None or not allowed:
                return []
            rows = conn.execute(
                sql.select_versions()
                .where(db.versions.c.asset_id == apk, db.versions.c.label_id.in_(allowed))
                .order_by(db.versions.c.id)
            ).all()
        return [self._to_version(r) for r in rows]

    # -- writes ------------------------------------------------------------------------------
    @_in_unit
    def check_label(self, user: User, label: str | Label | None, parents: Sequence[str] = ()) -> tuple[Label, tuple[int, ...]]:
        """The label a new version gets, and its parents' keys; refuses a label below its inputs'."""
        parent_pks: list[int] = []
        parent_labels: list[Label] = []
        if parents:
            with self.db.read() as conn:
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

    @_in_unit
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
            with self.db.read() as conn:
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
        blob = self.blobs.stage_file(data) if isinstance(data, Path) else self.blobs.stage_bytes(bytes(data))
        if source_key is not None and asset_pk is None:
            existing = self.find_by_source(user, [source_key]).get(source_key)
            if existing is not None:
                try:
                    unchanged = self.same_or_newer(existing, blob.sha256, final, source_key)
                except UsageError:
                    self.blobs.discard()
                    raise
                if unchanged:
                    self.blobs.discard()
                    with self.db.read() as conn:
                        row = conn.execute(
                            sql.select_versions()
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

    @_in_unit
    def children(self, user: User, version_id: str, *, kind: str | None = None) -> list[Version]:
        """Readable versions derived directly from `version_id` (NotFound if it is not readable)."""
        row, _ = self._resolve(user, version_id, "children")
        allowed = self.readable_label_ids(user)
        with self.db.read() as conn:
            q = (
                sql.select_versions()
                .join(db.lineage, db.lineage.c.child_id == db.versions.c.id)
                .where(db.lineage.c.parent_id == row.id, db.versions.c.label_id.in_(allowed))
            )
            if kind is not None:
                q = q.where(db.versions.c.kind == kind)
            rows = conn.execute(q.order_by(db.versions.c.id)).all()
            parents = self._readable_parents(conn, user, [r.id for r in rows])
        return [self._to_version(r, parents.get(r.id, ())) for r in rows]

    @_in_unit
    def insert_batch(self, user: User, items: list[NewVersion], pool: Any = None) -> list[Version]:
        """Make staged blobs durable, then insert every version, its lineage, text and audit entry
        in one transaction. All or nothing."""
        if not items:
            return []
        try:
            self.blobs.commit(pool)
        except BaseException:
            self.blobs.discard()
            raise
        now = _now()
        out: list[Version] = []
        with self.db.transaction() as conn:
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
            interned: dict[str, int] = {}
            for i, it in enumerate(items):
                lid = self.labels.intern(conn, it.label, interned)
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
                self.audit.record(user.name, it.action, vid, detail)
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

    @_in_unit
    def declassify(self, user: User, version_id: str, to: str | Label, reason: str) -> Version:
        """The only way down: an officer re-labels a version lower, as a new version of the asset."""
        row, _ = self._resolve(user, version_id, "declassify")
        if not user.has_role("officer"):
            self.audit.record(user.name, "refused", row.public_id, {"action": "declassify", "reason": "not officer"})
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
        with self.db.read() as conn:
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
        with self.db.read() as conn:
            return conn.execute(
                select(db.versions.c.asset_id).where(db.versions.c.public_id == version_public_id)
            ).scalar_one()

    @_in_unit
    def find_by_source(self, user: User, source_keys: Sequence[str]) -> dict[str, tuple[int, str, int]]:
        """For each source key, the newest version the user may read: (asset pk, sha256, label id)."""
        allowed = set(self.readable_label_ids(user))
        out: dict[str, tuple[int, str, int]] = {}
        if not source_keys or not allowed:
            return out
        with self.db.read() as conn:
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
