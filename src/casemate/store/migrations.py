"""Numbered schema migrations with frozen DDL.

Each migration declares the tables it creates or changes as they were when it shipped, in a
MetaData of its own: editing `db.py` never changes what an old migration does. A test migrates an
empty database and compares the result with the live schema of `db.py` (any drift fails it), so a
change to `db.py` needs a new migration here. Append; never edit one that has shipped.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import (
    Boolean,
    Column,
    Connection,
    Engine,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    select,
)

from casemate.errors import WorkspaceError
from casemate.store import db


def _m1_initial(conn: Connection) -> None:
    m = MetaData()
    Table("meta", m, Column("key", String(64), primary_key=True), Column("value", Text, nullable=False))
    Table(
        "users", m,
        Column("id", Integer, primary_key=True),
        Column("name", String(64), nullable=False, unique=True),
        Column("clearance", String(300), nullable=False),
        Column("roles", String(200), nullable=False),
        Column("disabled", Boolean, nullable=False),
        Column("password_hash", Text, nullable=True),
        Column("created_at", String(40), nullable=False),
    )
    Table(
        "tokens", m,
        Column("id", Integer, primary_key=True),
        Column("user_id", Integer, ForeignKey("users.id"), nullable=False),
        Column("token_hash", String(64), nullable=False, unique=True),
        Column("label", String(200), nullable=False),
        Column("created_at", String(40), nullable=False),
        Column("revoked", Boolean, nullable=False),
    )
    Table(
        "labels", m,
        Column("id", Integer, primary_key=True),
        Column("text", String(300), nullable=False, unique=True),
    )
    assets = Table(
        "assets", m,
        Column("id", Integer, primary_key=True),
        Column("public_id", String(32), nullable=False, unique=True),
        Column("source_key", Text, nullable=True),
        Column("created_at", String(40), nullable=False),
    )
    Index("ix_assets_source_key", assets.c.source_key)
    versions = Table(
        "versions", m,
        Column("id", Integer, primary_key=True),
        Column("public_id", String(32), nullable=False, unique=True),
        Column("asset_id", Integer, ForeignKey("assets.id"), nullable=False),
        Column("label_id", Integer, ForeignKey("labels.id"), nullable=False),
        Column("sha256", String(64), nullable=False),
        Column("size", Integer, nullable=False),
        Column("kind", String(32), nullable=False),
        Column("name", Text, nullable=False),
        Column("source_path", Text, nullable=True),
        Column("created_by", String(64), nullable=False),
        Column("created_at", String(40), nullable=False),
        Column("metadata", Text, nullable=False),
    )
    Index("ix_versions_label", versions.c.label_id, versions.c.id)
    Index("ix_versions_kind_label", versions.c.kind, versions.c.label_id, versions.c.id)
    Index("ix_versions_asset", versions.c.asset_id, versions.c.id)
    Index("ix_versions_sha", versions.c.sha256)
    Table(
        "texts", m,
        Column("version_id", Integer, ForeignKey("versions.id"), primary_key=True),
        Column("text", Text, nullable=False),
    )
    lineage = Table(
        "lineage", m,
        Column("child_id", Integer, ForeignKey("versions.id"), primary_key=True),
        Column("parent_id", Integer, ForeignKey("versions.id"), primary_key=True),
    )
    Index("ix_lineage_parent", lineage.c.parent_id)
    Table(
        "audit", m,
        Column("seq", Integer, primary_key=True, autoincrement=False),
        Column("line", Text, nullable=False),
    )
    Table(
        "audit_checkpoints", m,
        Column("end_seq", Integer, primary_key=True, autoincrement=False),
        Column("body", Text, nullable=False),
        Column("signature", String(200), nullable=False),
    )
    m.create_all(conn)
    for ddl in db.append_only_ddl(conn.engine):
        conn.exec_driver_sql(ddl)


def _m2_kind_index(conn: Connection) -> None:
    # Paging by kind for a user who reads every label: newest ids of one kind, no sort.
    m = MetaData()
    versions = Table("versions", m, Column("id", Integer, primary_key=True), Column("kind", String(32)))
    Index("ix_versions_kind", versions.c.kind, versions.c.id).create(conn, checkfirst=True)


def _m3_jobs_aliases(conn: Connection) -> None:
    m = MetaData()
    Table("versions", m, Column("id", Integer, primary_key=True))  # the foreign key's target
    jobs = Table(
        "jobs", m,
        Column("id", Integer, primary_key=True),
        Column("public_id", String(32), nullable=False, unique=True),
        Column("kind", String(64), nullable=False),
        Column("state", String(16), nullable=False),
        Column("submitted_by", String(64), nullable=False),
        Column("label", String(300), nullable=False),
        Column("executor", String(16), nullable=False),
        Column("external_id", String(64), nullable=True),
        Column("spec", Text, nullable=False),
        Column("result", Text, nullable=True),
        Column("log", Text, nullable=False),
        Column("progress", Float, nullable=False),
        Column("created_at", String(40), nullable=False),
        Column("updated_at", String(40), nullable=False),
        Column("started_at", String(40), nullable=True),
        Column("ended_at", String(40), nullable=True),
    )
    Index("ix_jobs_state", jobs.c.state, jobs.c.id)
    Table(
        "aliases", m,
        Column("name", String(64), primary_key=True),
        Column("version_id", Integer, ForeignKey("versions.id"), nullable=False),
        Column("set_by", String(64), nullable=False),
        Column("set_at", String(40), nullable=False),
    )
    m.create_all(conn, tables=[m.tables["jobs"], m.tables["aliases"]], checkfirst=True)


MIGRATIONS: list[Callable[[Connection], None]] = [_m1_initial, _m2_kind_index, _m3_jobs_aliases]


def current_version(conn: Connection) -> int:
    if not conn.engine.dialect.has_table(conn, "meta"):
        return 0
    row = conn.execute(select(db.meta.c.value).where(db.meta.c.key == "schema_version")).first()
    return int(row[0]) if row else 0


def migrate(engine: Engine) -> int:
    """Bring the schema up to date; returns the version reached."""
    with db.write_connection(engine) as conn, conn.begin():
        version = current_version(conn)
        if version > len(MIGRATIONS):
            raise WorkspaceError(
                f"this workspace has schema version {version}, newer than this Casemate "
                f"({len(MIGRATIONS)}): upgrade Casemate"
            )
        for number in range(version + 1, len(MIGRATIONS) + 1):
            MIGRATIONS[number - 1](conn)
            stmt = db.meta.delete().where(db.meta.c.key == "schema_version")
            conn.execute(stmt)
            conn.execute(db.meta.insert().values(key="schema_version", value=str(number)))
        return len(MIGRATIONS)
