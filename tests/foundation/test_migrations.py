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


def schema_of(engine) -> dict:
    """Everything a migration decides, as the database reports it: tables, columns (type, null,
    key), indexes, unique constraints, foreign keys, triggers."""
    insp = inspect(engine)
    out = {}
    for table in sorted(insp.get_table_names()):
        out[table] = {
            "columns": [(c["name"], str(c["type"]), bool(c["nullable"])) for c in insp.get_columns(table)],
            "pk": insp.get_pk_constraint(table)["constrained_columns"],
            "indexes": sorted((i["name"], tuple(i["column_names"]), bool(i["unique"])) for i in insp.get_indexes(table)),
            "unique": sorted(tuple(u["column_names"]) for u in insp.get_unique_constraints(table)),
            "fks": sorted((tuple(f["constrained_columns"]), f["referred_table"], tuple(f["referred_columns"]))
                          for f in insp.get_foreign_keys(table)),
        }
    if engine.dialect.name == "sqlite":
        with engine.connect() as conn:
            out["_triggers"] = sorted(r[0] for r in conn.exec_driver_sql("SELECT name FROM sqlite_master WHERE type='trigger'"))
    return out


def test_migrating_an_empty_database_gives_exactly_the_live_schema(tmp_path) -> None:
    migrated = db.make_engine(tmp_path / "migrated.db")
    migrate(migrated)
    live = db.make_engine(tmp_path / "live.db")
    with db.write_connection(live) as conn, conn.begin():
        db.metadata.create_all(conn)
        for ddl in db.append_only_ddl(live):
            conn.exec_driver_sql(ddl)
    got, want = schema_of(migrated), schema_of(live)
    for table in sorted(set(got) | set(want)):
        assert got.get(table) == want.get(table), f"table {table}: db.py and the migrations differ; add a migration"


def test_an_edit_to_the_live_schema_is_caught(tmp_path) -> None:
    """The comparison above can fail: a column added to db.py without a migration shows."""
    from sqlalchemy import Column, MetaData, Text

    migrated = db.make_engine(tmp_path / "migrated.db")
    migrate(migrated)
    drifted = MetaData()
    for t in db.metadata.sorted_tables:
        t.to_metadata(drifted)
    drifted.tables["versions"].append_column(Column("extra", Text, nullable=True))
    live = db.make_engine(tmp_path / "live.db")
    with db.write_connection(live) as conn, conn.begin():
        drifted.create_all(conn)
        for ddl in db.append_only_ddl(live):
            conn.exec_driver_sql(ddl)
    assert schema_of(migrated)["versions"] != schema_of(live)["versions"]
