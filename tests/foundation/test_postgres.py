"""The same catalog on PostgreSQL: a throwaway cluster on a Unix socket (no TCP listener at all)."""

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from casemate.catalog.ingest import ingest
from casemate.errors import NotFound, UsageError
from casemate.workspace import Workspace


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for base in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (base / name).exists():
            return str(base / name)
    return None


@pytest.fixture(scope="module")
def pg_url():
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if not initdb or not pg_ctl:
        pytest.skip("PostgreSQL server binaries absent (Debian package postgresql): SQLite-only run")
    pytest.importorskip("psycopg", reason="psycopg not installed (dev extras)")
    # Not under pytest's tmp root: that folder is private to root and the server runs as postgres.
    import tempfile

    root = Path(tempfile.mkdtemp(prefix="casemate-pg-"))
    prefix: list[str] = []
    if os.geteuid() == 0:  # the server refuses to run as root
        if shutil.which("runuser") is None:
            pytest.skip("running as root without runuser: cannot start PostgreSQL")
        import pwd

        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("no 'postgres' system user to run the server as")
        shutil.chown(root, "postgres")
        prefix = ["runuser", "-u", "postgres", "--"]
    data = root / "data"
    subprocess.run(prefix + [initdb, "-D", str(data), "-A", "trust", "-U", "casemate"], check=True,
                   capture_output=True)
    subprocess.run(prefix + [pg_ctl, "-D", str(data), "-w", "-l", str(root / "log"),
                             "-o", f"-k {root} -c listen_addresses=''", "start"], check=True, capture_output=True)
    try:
        import psycopg

        deadline = time.time() + 20
        while True:
            try:
                with psycopg.connect(f"host={root} user=casemate dbname=postgres", autocommit=True) as c:
                    c.execute("CREATE DATABASE casemate_a")
                    c.execute("CREATE DATABASE casemate_b")
                break
            except psycopg.OperationalError:
                if time.time() > deadline:
                    raise
                time.sleep(0.3)
        yield f"postgresql+psycopg://casemate@/{{db}}?host={root}"
    finally:
        subprocess.run(prefix + [pg_ctl, "-D", str(data), "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def test_catalog_on_postgres(pg_url, tmp_path) -> None:
    url = pg_url.format(db="casemate_a")
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


def test_concurrent_writers_share_one_chain(pg_url, tmp_path) -> None:
    url = pg_url.format(db="casemate_b")
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
