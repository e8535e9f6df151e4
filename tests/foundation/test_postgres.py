"""The same catalog on PostgreSQL: a throwaway cluster on a Unix socket (no TCP listener at all)."""

import subprocess
import sys

import pytest

from casemate.catalog.ingest import ingest
from casemate.errors import NotFound, UsageError
from casemate.workspace import Workspace

from . import test_catalog as catalog_tests

# Every test here runs on PostgreSQL only (the shared cluster of tests/conftest.py); the catalog
# tests of test_catalog.py are collected here a second time, on PostgreSQL.
pytestmark = pytest.mark.parametrize("database_backend", ["postgres"], indirect=True)

for _name in dir(catalog_tests):
    if _name.startswith("test_"):
        globals()[_name] = getattr(catalog_tests, _name)


@pytest.fixture
def ws(home, database_backend):
    """test_catalog.py's workspace (its users), its metadata in a fresh PostgreSQL database."""
    ws = Workspace.init(home, database_url=database_backend.new_url())
    admin = ws.acting_user("admin")
    ws.users.add(admin, "nora", "NP", ["analyst"])
    ws.users.add(admin, "dana", "DR", ["analyst"])
    ws.users.add(admin, "sam", "S//ALPHA", ["analyst", "officer"])
    ws.users.add(admin, "tess", "TS//ALPHA/BRAVO", ["officer"])
    yield ws
    ws.close()


def test_catalog_on_postgres(database_backend, tmp_path) -> None:
    url = database_backend.new_url()
    ws = Workspace.init(tmp_path / "ws", database_url=url)
    admin = ws.acting_user("admin")
    ws.users.add(admin, "dana", "DR")
    ws.users.add(admin, "sam", "S//ALPHA", ["officer"])
    sam, dana = ws.acting_user("sam"), ws.acting_user("dana")
    src = tmp_path / "in"
    src.mkdir()
    for i in range(30):
        (src / f"f{i}.txt").write_text(f"file {i}")
    report = ingest(ws, sam, [src], "S//ALPHA", run_hooks=False)
    assert len(report.ingested) == 30
    v = report.ingested[0]
    with pytest.raises(NotFound):
        ws.catalog.get(dana, v.id)
    derived = ws.catalog.put(sam, b"d", name="d", kind="detections", parents=[v.id])
    assert str(derived.label) == "S//ALPHA"
    with pytest.raises(UsageError):
        ws.catalog.put(sam, b"x", name="x", kind="detections", label="DR", parents=[v.id])
    dec = ws.catalog.declassify(sam, v.id, "DR", "released")
    assert ws.catalog.text(dana, dec.id) == v.name.replace("f", "file ").replace(".txt", "")
    assert [x.id for x in ws.catalog.list(dana)] == [dec.id]
    assert len(ws.catalog.list(sam, limit=100)) == 32
    assert ws.catalog.lineage(sam, derived.id)["parents"][0]["id"] == v.id
    ws.close()
    with Workspace.open(tmp_path / "ws") as again:
        assert again.audit.verify().ok
        with pytest.raises(Exception, match="append-only"):
            with again.engine.begin() as conn:
                conn.exec_driver_sql("DELETE FROM audit WHERE seq = 1")


def test_concurrent_writers_share_one_chain(database_backend, tmp_path) -> None:
    url = database_backend.new_url()
    home = tmp_path / "ws"
    Workspace.init(home, database_url=url).close()
    procs = []
    for w in range(3):
        src = tmp_path / f"in{w}"
        src.mkdir()
        for i in range(60):
            (src / f"w{w}-{i}.txt").write_text(f"writer {w} file {i}")
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "casemate.cli", "--home", str(home), "ingest", str(src), "--label", "NP",
             "--batch-size", "7", "--no-hooks"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    with Workspace.open(home) as ws:
        assert len(ws.catalog.list(ws.acting_user("admin"), limit=500)) == 180
        result = ws.audit.verify()
        assert result.ok, result
