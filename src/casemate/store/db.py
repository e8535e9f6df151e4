"""The metadata store: SQLAlchemy 2 Core over SQLite (default) or PostgreSQL.

This is the one module that knows SQL dialects: engine options, pragmas and the append-only
triggers. Everything else uses portable SQLAlchemy Core expressions.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import (
    Boolean,
    Column,
    Engine,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
    text,
)

metadata = MetaData()

meta = Table(
    "meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

users = Table(
    "users",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("clearance", String(300), nullable=False),
    Column("roles", String(200), nullable=False, default=""),
    Column("disabled", Boolean, nullable=False, default=False),
    Column("password_hash", Text, nullable=True),
    Column("created_at", String(40), nullable=False),
)

tokens = Table(
    "tokens",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("user_id", Integer, ForeignKey("users.id"), nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("label", String(200), nullable=False, default=""),
    Column("created_at", String(40), nullable=False),
    Column("revoked", Boolean, nullable=False, default=False),
)

labels = Table(
    "labels",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("text", String(300), nullable=False, unique=True),
)

assets = Table(
    "assets",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("public_id", String(32), nullable=False, unique=True),
    Column("source_key", Text, nullable=True),
    Column("created_at", String(40), nullable=False),
)
Index("ix_assets_source_key", assets.c.source_key)

versions = Table(
    "versions",
    metadata,
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
    Column("metadata", Text, nullable=False, default="{}"),
)
Index("ix_versions_label", versions.c.label_id, versions.c.id)
Index("ix_versions_kind_label", versions.c.kind, versions.c.label_id, versions.c.id)
Index("ix_versions_asset", versions.c.asset_id, versions.c.id)
ix_versions_kind = Index("ix_versions_kind", versions.c.kind, versions.c.id)
Index("ix_versions_sha", versions.c.sha256)

texts = Table(
    "texts",
    metadata,
    Column("version_id", Integer, ForeignKey("versions.id"), primary_key=True),
    Column("text", Text, nullable=False),
)

lineage = Table(
    "lineage",
    metadata,
    Column("child_id", Integer, ForeignKey("versions.id"), primary_key=True),
    Column("parent_id", Integer, ForeignKey("versions.id"), primary_key=True),
)
Index("ix_lineage_parent", lineage.c.parent_id)

audit = Table(
    "audit",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("line", Text, nullable=False),
)

audit_checkpoints = Table(
    "audit_checkpoints",
    metadata,
    Column("end_seq", Integer, primary_key=True, autoincrement=False),
    Column("body", Text, nullable=False),
    Column("signature", String(200), nullable=False),
)

# Long work (training, detection, transcription, pack runs) as jobs: state, progress, log, result.
# `label` is the job's label (at least the least upper bound of its inputs'), in text form.
jobs = Table(
    "jobs",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("public_id", String(32), nullable=False, unique=True),
    Column("kind", String(64), nullable=False),
    Column("state", String(16), nullable=False),
    Column("submitted_by", String(64), nullable=False),
    Column("label", String(300), nullable=False),
    Column("executor", String(16), nullable=False),
    Column("external_id", String(64), nullable=True),
    Column("spec", Text, nullable=False, default="{}"),
    Column("result", Text, nullable=True),
    Column("log", Text, nullable=False, default=""),
    Column("progress", Float, nullable=False, default=0.0),
    Column("created_at", String(40), nullable=False),
    Column("updated_at", String(40), nullable=False),
    Column("started_at", String(40), nullable=True),
    Column("ended_at", String(40), nullable=True),
)
Index("ix_jobs_state", jobs.c.state, jobs.c.id)

# Named pointers to versions (model aliases such as "production"); every change is audited.
aliases = Table(
    "aliases",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("version_id", Integer, ForeignKey("versions.id"), nullable=False),
    Column("set_by", String(64), nullable=False),
    Column("set_at", String(40), nullable=False),
)


def _sqlite_pragmas(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    # FULL: a committed transaction survives power loss, not only a process crash.
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA cache_size=-65536")
    cur.close()


def make_engine(url_or_path: str | Path) -> Engine:
    """An engine for a SQLite file path or any SQLAlchemy URL (postgresql+psycopg://...)."""
    url = str(url_or_path)
    if "://" not in url:
        url = f"sqlite:///{Path(url).resolve()}"
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
        # A write transaction takes the write lock when it starts, not at its first write, so two
        # writers queue on busy_timeout instead of failing with "database is locked" mid-way.
        @event.listens_for(engine, "begin")
        def _begin(conn) -> None:  # type: ignore[no-untyped-def]
            if conn.get_execution_options().get("casemate_write"):
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            else:
                conn.exec_driver_sql("BEGIN")

        @event.listens_for(engine, "connect")
        def _no_pysqlite_begin(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
            dbapi_conn.isolation_level = None

        return engine
    return create_engine(url, pool_pre_ping=True)


_APPEND_ONLY_SQLITE = [
    """CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
       BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END""",
    """CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
       BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END""",
    """CREATE TRIGGER IF NOT EXISTS versions_no_update BEFORE UPDATE ON versions
       BEGIN SELECT RAISE(ABORT, 'versions are immutable'); END""",
]

_APPEND_ONLY_POSTGRES = [
    """CREATE OR REPLACE FUNCTION casemate_append_only() RETURNS trigger AS $$
       BEGIN RAISE EXCEPTION 'audit log is append-only'; END; $$ LANGUAGE plpgsql""",
    """CREATE TRIGGER audit_no_change BEFORE UPDATE OR DELETE ON audit
       FOR EACH ROW EXECUTE FUNCTION casemate_append_only()""",
    """CREATE TRIGGER versions_no_update BEFORE UPDATE ON versions
       FOR EACH ROW EXECUTE FUNCTION casemate_append_only()""",
]


def append_only_ddl(engine: Engine) -> list[str]:
    """Triggers that make the audit log append-only and versions immutable, in this dialect."""
    return _APPEND_ONLY_SQLITE if engine.dialect.name == "sqlite" else _APPEND_ONLY_POSTGRES


def lock_for_append(conn) -> None:  # type: ignore[no-untyped-def]
    """Serialise write transactions (label interning, the audit chain head).

    SQLite's BEGIN IMMEDIATE already holds the database's single write lock; PostgreSQL needs an
    explicit table lock so two writers never read the same chain head or intern the same label.
    """
    if conn.engine.dialect.name == "postgresql":
        conn.exec_driver_sql("LOCK TABLE audit IN SHARE ROW EXCLUSIVE MODE")


def write_connection(engine: Engine):  # type: ignore[no-untyped-def]
    """A connection whose transactions take the write lock up front (SQLite: BEGIN IMMEDIATE)."""
    return engine.connect().execution_options(casemate_write=True)


__all__ = [
    "aliases",
    "append_only_ddl",
    "assets",
    "audit",
    "audit_checkpoints",
    "jobs",
    "labels",
    "lineage",
    "make_engine",
    "meta",
    "metadata",
    "text",
    "texts",
    "tokens",
    "users",
    "versions",
]
