"""A full disk during ingest and during indexing (the workspace on a small tmpfs): a clear error
(exit code 74, a message naming the disk) and nothing partial: every catalog row has its blob and
text and its audit entry, every indexed version has all its chunks, the audit log verifies, and
once space is freed the same command finishes the work."""

from __future__ import annotations

import errno
import json
import os
import random
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from casemate.cli import DISK_FULL_EXIT

from .faults_helpers import blob_ok

WORDS = ("carburant dépôt convoi mardi logistique véhicule base nord rapport section ordre marche "
         "the fuel depot convoy report north base vehicle order").split()


@contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    path.mkdir(parents=True)
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True,
                       capture_output=True, text=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"cannot mount a tmpfs here (needs root and mount rights): {exc}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def casemate(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "casemate.cli", "--home", str(home), *args],
                          capture_output=True, text=True, timeout=300)


def text_files(folder: Path, n: int, size: int, seed: int) -> None:
    rng = random.Random(seed)
    folder.mkdir()
    for i in range(n):
        words = rng.choices(WORDS, k=size // 7)  # ~7 characters a word with its space
        (folder / f"doc{i:03d}.txt").write_text(f"document {i} " + " ".join(words))


def assert_clear_disk_full(out: subprocess.CompletedProcess[str], mount: Path) -> None:
    assert out.returncode == DISK_FULL_EXIT, (out.returncode, out.stderr)
    assert "is full" in out.stderr and str(mount) in out.stderr, out.stderr
    assert "Traceback" not in out.stderr and "internal error" not in out.stderr, out.stderr


def check_catalog(home: Path) -> int:
    """Rows whole (blob with its hash, text for documents), one ingest audit entry each, audit verifies."""
    from casemate.workspace import Workspace

    con = sqlite3.connect(home / "catalog.db")
    rows = con.execute("SELECT v.public_id, v.sha256, v.kind, (SELECT COUNT(*) FROM texts t "
                       "WHERE t.version_id = v.id) FROM versions v").fetchall()
    lines = [json.loads(line) for (line,) in con.execute("SELECT line FROM audit")]
    con.close()
    for vid, sha, kind, n_text in rows:
        assert blob_ok(home, sha), f"version {vid} has no blob or a wrong one"
        assert kind != "document" or n_text == 1, f"document {vid} lost its text"
    ingested = sorted(e["target"] for e in lines if e["action"] == "ingest")
    assert ingested == sorted(r[0] for r in rows), "ingest audit entries and catalog rows disagree"
    with Workspace.open(home) as ws:
        result = ws.audit.verify()
        assert result.ok, result
    return len(rows)


def check_index(home: Path) -> set[str]:
    """Every indexed version has all the chunks its row announces."""
    path = home / "index" / "assistant.sqlite"
    if not path.exists():
        return set()
    con = sqlite3.connect(path)
    rows = con.execute("SELECT v.version_id, v.n_chunks, (SELECT COUNT(*) FROM chunks c WHERE c.version_id = "
                       "v.version_id) FROM versions v").fetchall()
    con.close()
    for vid, announced, found in rows:
        assert announced == found, f"index: version {vid} has {found} of its {announced} chunks"
    return {r[0] for r in rows}


def test_full_disk_during_ingest(tmp_path: Path) -> None:
    src = tmp_path / "in"
    text_files(src, 12, 900_000, seed=1)  # ~11 MB of documents (blob + text each) for an 8 MB disk
    with tmpfs(tmp_path / "disk", "8m") as disk:
        home = disk / "ws"
        assert casemate(home, "init").returncode == 0
        out = casemate(home, "ingest", str(src), "--label", "NP", "--batch-size", "2", "--no-hooks")
        assert_clear_disk_full(out, disk)
        kept = check_catalog(home)
        assert kept < 12
        # more room, the same command: what was stored is skipped, the rest goes in
        subprocess.run(["mount", "-o", "remount,size=64m", str(disk)], check=True)
        again = casemate(home, "ingest", str(src), "--label", "NP", "--no-hooks")
        assert again.returncode == 0, again.stderr
        assert check_catalog(home) == 12
        gc = casemate(home, "gc", "--min-age", "0")
        assert gc.returncode == 0, gc.stderr


def _fill(disk: Path, leave: int) -> Path:
    """Fill the disk, then give back `leave` bytes."""
    filler = disk / "filler"
    block = b"\0" * 65536
    with open(filler, "wb") as fh:
        try:
            while True:
                fh.write(block)
                fh.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    size = filler.stat().st_size
    os.truncate(filler, max(0, size - leave))
    return filler


def test_full_disk_during_indexing(tmp_path: Path) -> None:
    first, rest = tmp_path / "first", tmp_path / "rest"
    text_files(first, 1, 3000, seed=2)
    text_files(rest, 30, 1500, seed=3)
    with tmpfs(tmp_path / "disk", "16m") as disk:
        home = disk / "ws"
        assert casemate(home, "init").returncode == 0
        ing = casemate(home, "ingest", str(first), "--label", "NP")  # indexed by the ingest hook
        assert ing.returncode == 0, ing.stderr
        assert len(check_index(home)) == 1
        ing = casemate(home, "ingest", str(rest), "--label", "NP", "--no-hooks")
        assert ing.returncode == 0, ing.stderr
        filler = _fill(disk, 48 * 1024)  # the index of the 30 needs several times that
        out = casemate(home, "index")
        assert_clear_disk_full(out, disk)
        filler.unlink()
        assert check_catalog(home) == 31
        assert 1 <= len(check_index(home)) < 31
        again = casemate(home, "index")
        assert again.returncode == 0, again.stderr
        assert len(check_index(home)) == 31
        found = casemate(home, "search", "carburant", "--json")
        assert found.returncode == 0 and json.loads(found.stdout)["results"], found.stdout
