"""The index file: BM25 input persisted per chunk, so loading never tokenises; old files migrate."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from casemate.assistant import storage
from casemate.assistant.chunking import ChunkDraft
from casemate.assistant.search import ChunkRecord, SearchIndex, VersionInfo
from casemate.assistant.storage import IndexStore
from casemate.security.labels import format_label, parse_label
from casemate.security.policy import User

WORDS = ["droits", "citoyens", "loi", "liberté", "impôt", "contribution", "carburant", "dépôt", "convoi",
         "opération", "tempête", "mardi", "nord", "égaux", "sûreté", "propriété"]
LABELS = ["NP", "DR", "S", "S//ALPHA", "TS"]


def _corpus(seed: int, n_versions: int) -> list[tuple[VersionInfo, list[ChunkDraft], np.ndarray]]:
    rng = np.random.default_rng(seed)
    out = []
    for v in range(n_versions):
        label = parse_label(LABELS[v % len(LABELS)])
        drafts = [ChunkDraft(" ".join(rng.choice(WORDS, int(rng.integers(3, 30)))), {"page": i + 1})
                  for i in range(int(rng.integers(1, 6)))]
        vecs = rng.standard_normal((len(drafts), 8)).astype(np.float32)
        out.append((VersionInfo(f"v{seed}-{v}", f"a{v}", f"doc {v}", "document", label), drafts, vecs))
    return out


def _results(index: SearchIndex, seed: int) -> list[list[tuple[int, str, float, float, str]]]:
    rng = np.random.default_rng(seed)
    out = []
    for clearance in LABELS + ["TS//ALPHA"]:
        user = User("u", parse_label(clearance))
        for _ in range(5):
            q = rng.standard_normal(8).astype(np.float32)
            text = " ".join(rng.choice(WORDS, 3))
            out.append([(h.chunk_id, h.version_id, round(h.bm25, 5), round(h.score, 9), format_label(h.label))
                        for h in index.search(user, q, text, k=8)])
    return out


def _reference(store: IndexStore) -> SearchIndex:
    """The index built the slow way (tokenising every chunk in Python) from the same file."""
    con = sqlite3.connect(store.path)
    vers = {r[0]: VersionInfo(r[0], r[1], r[2], r[3], parse_label(r[4]))
            for r in con.execute("SELECT version_id, asset_id, name, kind, label FROM versions")}
    rows = con.execute("SELECT id, version_id, label, anchor, text, vector FROM chunks").fetchall()
    con.close()
    recs = [ChunkRecord(r[0], vers[r[1]], parse_label(r[2]), json.loads(r[3]), r[4]) for r in rows]
    return SearchIndex(recs, np.frombuffer(b"".join(r[5] for r in rows), dtype=np.float32).reshape(len(rows), -1))


def test_loaded_index_ranks_like_tokenising_and_stays_incremental(tmp_path: Path) -> None:
    store = IndexStore(tmp_path / "assistant.sqlite", 8, "test")
    for item in _corpus(1, 12):
        store.add_version(*item)
    gen, index = store.load()
    assert len(index) > 12 and _results(index, 5) == _results(_reference(store), 5)
    # incremental: new versions bring new terms; a removed version is gone from the next load
    store.add_versions(_corpus(2, 4) + [(VersionInfo("vnew", "anew", "new", "document", parse_label("NP")),
                                         [ChunkDraft("zygomatique inédit", {"page": 1})],
                                         np.ones((1, 8), dtype=np.float32))])
    store.remove_version("v1-0")
    gen2, index2 = store.load()
    assert gen2 == gen + 2
    hits = index2.search(User("u", parse_label("NP")), None, "zygomatique", k=3)
    assert [h.version_id for h in hits] == ["vnew"]
    assert "v1-0" not in {v.version_id for v in index2._versions}
    assert _results(index2, 6) == _results(_reference(store), 6)


def _schema(con: sqlite3.Connection) -> dict[str, object]:
    """Tables with their columns (name, type, not null, default, pk), indexes with their columns."""
    out: dict[str, object] = {}
    for kind, name in con.execute("SELECT type, name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'"):
        if kind == "table":
            out[name] = [tuple(r[1:]) for r in con.execute(f"PRAGMA table_info({name})")]
            out[name + "/fk"] = [tuple(r[2:5]) + (r[6],) for r in con.execute(f"PRAGMA foreign_key_list({name})")]
        elif kind == "index":
            out["index " + name] = [r[2] for r in con.execute(f"PRAGMA index_info({name})")]
    return out


def test_migrating_an_empty_index_gives_exactly_the_live_schema(tmp_path: Path) -> None:
    migrated = sqlite3.connect(tmp_path / "m.sqlite", isolation_level=None)
    assert storage.migrate(migrated) == storage.LATEST
    assert migrated.execute("PRAGMA user_version").fetchone()[0] == storage.LATEST
    live = sqlite3.connect(tmp_path / "live.sqlite")
    live.executescript(storage.LIVE_SCHEMA)
    assert _schema(migrated) == _schema(live)
    assert [m.number for m in storage.MIGRATIONS] == list(range(1, storage.LATEST + 1))


def _release_1_file(path: Path, user_version: int) -> None:
    """An index file as the first release wrote it: migration 1's frozen DDL, rows without BM25 input."""
    con = sqlite3.connect(path, isolation_level=None)
    con.executescript(storage.MIGRATIONS[0].ddl)
    con.execute("INSERT INTO meta VALUES ('generation', '3'), ('embedder', 'test'), ('dim', '8')")
    for info, drafts, vecs in _corpus(3, 6):
        con.execute("INSERT INTO versions VALUES (?,?,?,?,?,?,?)", (info.version_id, info.asset_id, info.name,
                    info.kind, format_label(info.label), len(drafts), sum(len(d.text) for d in drafts)))
        for i, d in enumerate(drafts):
            con.execute("INSERT INTO chunks(version_id, ord, label, anchor, text, vector) VALUES (?,?,?,?,?,?)",
                        (info.version_id, i, format_label(info.label), json.dumps(d.anchor), d.text,
                         vecs[i].tobytes()))
    con.execute(f"PRAGMA user_version = {user_version}")
    con.close()


@pytest.mark.parametrize("user_version", [0, 1])  # 0: written before numbered migrations
def test_an_index_file_from_the_first_release_is_migrated(tmp_path: Path, user_version: int) -> None:
    path = tmp_path / "assistant.sqlite"
    _release_1_file(path, user_version)
    migrated = IndexStore(path, 8, "test")
    con = migrated._con()
    assert con.execute("PRAGMA user_version").fetchone()[0] == storage.LATEST
    live = sqlite3.connect(tmp_path / "live.sqlite")
    live.executescript(storage.LIVE_SCHEMA)
    assert _schema(con) == _schema(live)
    assert con.execute("SELECT count(*) FROM chunks WHERE terms IS NULL").fetchone()[0] == 0
    _, index = migrated.load()
    assert len(index) > 6 and _results(index, 7) == _results(_reference(migrated), 7)
    assert migrated.generation() == 3
