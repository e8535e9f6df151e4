"""Tampering with the audit log: every kind of change is detected at the right position."""

import json
import sqlite3
import subprocess
import sys

import pytest

from casemate.workspace import Workspace

N = 40


@pytest.fixture
def logged(home):
    ws = Workspace.init(home)
    ws.audit.checkpoint_every = 16
    admin = ws.acting_user("admin")
    with ws.unit():  # written together when the unit of work closes
        for i in range(N - 2):  # init wrote 2 entries already
            ws.audit.record("admin", "read", f"id{i}", {"i": i})
    ws.close()
    assert Workspace.open(home).audit.verify().ok
    del admin
    return home


def _db(home):
    con = sqlite3.connect(home / "catalog.db")
    con.execute("DROP TRIGGER IF EXISTS audit_no_update")
    con.execute("DROP TRIGGER IF EXISTS audit_no_delete")
    return con


def _lines(con):
    return [r[0] for r in con.execute("SELECT line FROM audit ORDER BY seq")]


def _rewrite(con, lines):
    con.execute("DELETE FROM audit")
    con.executemany("INSERT INTO audit(seq, line) VALUES (?, ?)", list(enumerate(lines)))
    con.commit()


def verify(home):
    with Workspace.open(home) as ws:
        return ws.audit.verify()


def test_intact_log_verifies(logged) -> None:
    r = verify(logged)
    assert r.ok and r.entries == N and r.checkpoints >= 2


@pytest.mark.parametrize("k", [0, 5, 15, 16, 20, N - 1])
def test_edited_entry(logged, k) -> None:
    con = _db(logged)
    lines = _lines(con)
    lines[k] = lines[k].replace('"actor":"admin"', '"actor":"mallory"')
    _rewrite(con, lines)
    r = verify(logged)
    assert not r.ok and r.first_bad == k, r


@pytest.mark.parametrize("k", [0, 7, 16, N - 1])
def test_deleted_entry(logged, k) -> None:
    con = _db(logged)
    lines = _lines(con)
    del lines[k]
    _rewrite(con, lines)
    r = verify(logged)
    assert not r.ok and r.first_bad == k, r


@pytest.mark.parametrize("k", [3, 17, N])
def test_inserted_entry(logged, k) -> None:
    import hashlib

    con = _db(logged)
    lines = _lines(con)
    # A forged entry that chains correctly to its predecessor: only what follows betrays it.
    prev = hashlib.sha256(lines[k - 1].encode()).hexdigest()
    forged = json.dumps(
        {"action": "read", "actor": "mallory", "detail": {}, "prev": prev, "seq": k, "target": None, "ts": "x"},
        sort_keys=True,
        separators=(",", ":"),
    )
    lines.insert(k, forged)
    _rewrite(con, lines)
    r = verify(logged)
    assert not r.ok and r.first_bad == k, r


@pytest.mark.parametrize("k", [0, 9, 15, N - 2])
def test_reordered_entries(logged, k) -> None:
    con = _db(logged)
    lines = _lines(con)
    lines[k], lines[k + 1] = lines[k + 1], lines[k]
    _rewrite(con, lines)
    r = verify(logged)
    assert not r.ok and r.first_bad == k, r


@pytest.mark.parametrize("k", [1, 20, N - 1])
def test_truncated_log(logged, k) -> None:
    con = _db(logged)
    lines = _lines(con)
    _rewrite(con, lines[:k])
    r = verify(logged)
    assert not r.ok and r.first_bad == k, r


def test_forged_checkpoint_signature(logged) -> None:
    con = _db(logged)
    row = con.execute("SELECT end_seq, signature FROM audit_checkpoints ORDER BY end_seq LIMIT 1").fetchone()
    sig = row[1][:10] + ("A" if row[1][10] != "A" else "B") + row[1][11:]
    con.execute("UPDATE audit_checkpoints SET signature=? WHERE end_seq=?", (sig, row[0]))
    con.commit()
    r = verify(logged)
    assert not r.ok and "signature" in r.reason


def test_append_only_in_the_database(logged) -> None:
    con = sqlite3.connect(logged / "catalog.db")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        con.execute("UPDATE audit SET line='x' WHERE seq=1")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        con.execute("DELETE FROM audit WHERE seq=1")


def test_cli_verify_exit_codes_and_position(logged) -> None:
    cm = [sys.executable, "-m", "casemate.cli", "--home", str(logged), "audit", "verify"]
    ok = subprocess.run(cm, capture_output=True, text=True)
    assert ok.returncode == 0 and "intact" in ok.stdout
    con = _db(logged)
    lines = _lines(con)
    lines[12] = lines[12].replace('"i":10', '"i":99')
    _rewrite(con, lines)
    bad = subprocess.run(cm, capture_output=True, text=True)
    assert bad.returncode != 0 and "entry 12" in bad.stderr
    tail = subprocess.run(cm[:-1] + ["tail", "-n", "3", "--json"], capture_output=True, text=True)
    assert tail.returncode == 0 and len(json.loads(tail.stdout)) == 3
