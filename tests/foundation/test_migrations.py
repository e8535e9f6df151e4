from sqlalchemy import inspect, select

from casemate.errors import WorkspaceError
from casemate.store import db
from casemate.store.migrations import MIGRATIONS, migrate


def test_migrations_upgrade_an_old_schema_and_refuse_a_newer_one(tmp_path) -> None:
    engine = db.make_engine(tmp_path / "old.db")
    with db.write_connection(engine) as conn, conn.begin():
        MIGRATIONS[0](conn)
        conn.execute(db.meta.insert().values(key="schema_version", value="1"))
    with db.write_connection(engine) as conn, conn.begin():
        conn.exec_driver_sql("DROP INDEX IF EXISTS ix_versions_kind")
    assert "ix_versions_kind" not in {i["name"] for i in inspect(engine).get_indexes("versions")}
    assert migrate(engine) == len(MIGRATIONS)
    assert "ix_versions_kind" in {i["name"] for i in inspect(engine).get_indexes("versions")}
    assert migrate(engine) == len(MIGRATIONS)  # idempotent
    with db.write_connection(engine) as conn, conn.begin():
        conn.execute(db.meta.update().where(db.meta.c.key == "schema_version").values(value="99"))
    try:
        migrate(engine)
    except WorkspaceError as exc:
        assert "newer than this Casemate" in exc.message
    else:  # pragma: no cover
        raise AssertionError("a newer schema must be refused")
    with engine.connect() as conn:
        assert conn.execute(select(db.meta.c.value).where(db.meta.c.key == "schema_version")).scalar() == "99"
