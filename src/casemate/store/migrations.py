"""Numbered schema migrations. Append a function; never edit one that has shipped."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Connection, Engine, select

from casemate.errors import WorkspaceError
from casemate.store import db


def _m1_initial(conn: Connection) -> None:
    db.metadata.create_all(conn)
    for ddl in db.append_only_ddl(conn.engine):
        conn.exec_driver_sql(ddl)


def _m2_kind_index(conn: Connection) -> None:
    # Paging by kind for a user who reads every label: newest ids of one kind, no sort.
    db.ix_versions_kind.create(conn, checkfirst=True)


def _m3_jobs_aliases(conn: Connection) -> None:
    db.jobs.create(conn, checkfirst=True)
    db.aliases.create(conn, checkfirst=True)


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
