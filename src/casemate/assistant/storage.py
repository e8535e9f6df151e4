"""The index file (ws.home/index/assistant.sqlite): versions and chunks with labels, vectors and
BM25 input, under numbered migrations.

One row per chunk with its version's label, anchor, text, e5 vector and BM25 input; a version is
added or removed in one transaction, so a crash never leaves half a document. The schema is built
by `MIGRATIONS`, whose DDL is frozen: a change is a new migration, never an edit of an old one
(tests/assistant/test_assistant_index_store.py checks that migrating an empty file gives exactly
`LIVE_SCHEMA`). `PRAGMA user_version` records how far a file has gone.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from casemate.assistant import bm25
from casemate.assistant.chunking import ChunkDraft
from casemate.assistant.search import SearchIndex, VersionInfo
from casemate.errors import IntegrityError
from casemate.security.labels import format_label, parse_label


@dataclass(frozen=True, slots=True)
class Migration:
    number: int
    why: str
    ddl: str  # frozen: never edit a released migration, add one
    backfill: Callable[[sqlite3.Connection], None] | None = None


def _backfill_bm25(con: sqlite3.Connection) -> None:
    """Tokenise the chunks written without BM25 input (once, inside the migration's transaction)."""
    rows = con.execute("SELECT id, text FROM chunks WHERE terms IS NULL").fetchall()
    encoded = bm25.encode_chunks(con, [r[1] for r in rows])
    con.executemany("UPDATE chunks SET n_tokens=?, terms=?, tfs=? WHERE id=?",
                    [(*e, r[0]) for e, r in zip(encoded, rows, strict=True)])


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "versions and their labelled chunks with vectors", """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE versions (
  version_id TEXT PRIMARY KEY, asset_id TEXT NOT NULL, name TEXT NOT NULL, kind TEXT NOT NULL,
  label TEXT NOT NULL, n_chunks INTEGER NOT NULL, n_chars INTEGER NOT NULL
);
CREATE TABLE chunks (
  id INTEGER PRIMARY KEY, version_id TEXT NOT NULL REFERENCES versions(version_id) ON DELETE CASCADE,
  ord INTEGER NOT NULL, label TEXT NOT NULL, anchor TEXT NOT NULL, text TEXT NOT NULL, vector BLOB NOT NULL
);
CREATE INDEX chunks_version ON chunks(version_id);
"""),
    Migration(2, "BM25 input stored per chunk, so loading never tokenises", """
ALTER TABLE chunks ADD COLUMN n_tokens INTEGER;
ALTER TABLE chunks ADD COLUMN terms BLOB;
ALTER TABLE chunks ADD COLUMN tfs BLOB;
CREATE TABLE vocab (id INTEGER PRIMARY KEY, term TEXT NOT NULL UNIQUE);
""", _backfill_bm25),
)
LATEST = MIGRATIONS[-1].number

# What the code reads and writes. Only the migration test executes it: it must equal what
# MIGRATIONS build (drift fails that test).
LIVE_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE versions (
  version_id TEXT PRIMARY KEY, asset_id TEXT NOT NULL, name TEXT NOT NULL, kind TEXT NOT NULL,
  label TEXT NOT NULL, n_chunks INTEGER NOT NULL, n_chars INTEGER NOT NULL
);
CREATE TABLE chunks (
  id INTEGER PRIMARY KEY, version_id TEXT NOT NULL REFERENCES versions(version_id) ON DELETE CASCADE,
  ord INTEGER NOT NULL, label TEXT NOT NULL, anchor TEXT NOT NULL, text TEXT NOT NULL, vector BLOB NOT NULL,
  n_tokens INTEGER, terms BLOB, tfs BLOB
);
CREATE INDEX chunks_version ON chunks(version_id);
CREATE TABLE vocab (id INTEGER PRIMARY KEY, term TEXT NOT NULL UNIQUE);
"""


def schema_version(con: sqlite3.Connection) -> int:
    """How far a file has been migrated. Files from before numbered migrations (user_version 0 with
    tables) are placed once by what they hold."""
    version = int(con.execute("PRAGMA user_version").fetchone()[0])
    if version:
        return version
    cols = {r[1] for r in con.execute("PRAGMA table_info(chunks)")}
    if not cols:
        return 0
    return 2 if "terms" in cols else 1


def migrate(con: sqlite3.Connection) -> int:
    """Bring the file to LATEST, each migration in its own transaction. Returns the new version."""
    if int(con.execute("PRAGMA user_version").fetchone()[0]) == LATEST:
        return LATEST
    con.execute("BEGIN IMMEDIATE")  # one migrator at a time; re-read under the lock
    try:
        current = schema_version(con)
        if current > LATEST:
            raise IntegrityError(f"the assistant index is at schema {current}, newer than this release "
                                 f"({LATEST}): upgrade Casemate or rebuild the index")
        for m in MIGRATIONS:
            if m.number <= current:
                continue
            for statement in filter(str.strip, m.ddl.split(";")):
                con.execute(statement)
            if m.backfill is not None:
                m.backfill(con)
        con.execute(f"PRAGMA user_version = {LATEST}")
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return LATEST


class IndexStore:
    """The SQLite file. Thread-safe: one connection per thread."""

    def __init__(self, path: Path, dim: int, embedder_name: str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.dim = dim
        self._local = threading.local()
        con = self._con()
        migrate(con)
        with con:
            con.execute("BEGIN")
            con.execute("INSERT OR IGNORE INTO meta VALUES ('generation', '0')")
            con.execute("INSERT OR IGNORE INTO meta VALUES ('embedder', ?)", (embedder_name,))
            con.execute("INSERT OR IGNORE INTO meta VALUES ('dim', ?)", (str(dim),))
        stored = dict(con.execute("SELECT key, value FROM meta").fetchall())
        if stored["embedder"] != embedder_name or int(stored["dim"]) != dim:
            raise IntegrityError(
                f"the index {self.path} was built with embedder {stored['embedder']} (dim {stored['dim']}), "
                f"not {embedder_name} (dim {dim}): delete that file and run `casemate index` to rebuild it"
            )

    def _con(self) -> sqlite3.Connection:
        con = getattr(self._local, "con", None)
        if con is None:
            con = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=True)
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("PRAGMA foreign_keys=ON")
            con.execute("PRAGMA synchronous=NORMAL")
            self._local.con = con
        return con

    def close(self) -> None:
        con = getattr(self._local, "con", None)
        if con is not None:
            con.close()
            self._local.con = None

    def generation(self) -> int:
        row = self._con().execute("SELECT value FROM meta WHERE key='generation'").fetchone()
        return int(row[0])

    def indexed_versions(self) -> set[str]:
        return {r[0] for r in self._con().execute("SELECT version_id FROM versions")}

    def has_version(self, version_id: str) -> bool:
        q = "SELECT 1 FROM versions WHERE version_id=?"
        return self._con().execute(q, (version_id,)).fetchone() is not None

    def add_version(self, info: VersionInfo, drafts: Sequence[ChunkDraft], vectors: np.ndarray) -> None:
        """Add (or replace) one version and its chunks in one transaction."""
        self.add_versions([(info, drafts, vectors)])

    def add_versions(self, items: Sequence[tuple[VersionInfo, Sequence[ChunkDraft], np.ndarray]]) -> None:
        """Add (or replace) versions and their chunks, all in one transaction."""
        for _, drafts, vectors in items:
            if len(drafts) != len(vectors):
                raise ValueError("one vector per chunk")
        con = self._con()
        con.execute("BEGIN IMMEDIATE")
        try:
            for info, drafts, vectors in items:
                label = format_label(info.label)
                vecs = np.ascontiguousarray(vectors, dtype=np.float32)
                encoded = bm25.encode_chunks(con, [d.text for d in drafts])
                con.execute("DELETE FROM versions WHERE version_id=?", (info.version_id,))
                con.execute(
                    "INSERT INTO versions VALUES (?,?,?,?,?,?,?)",
                    (info.version_id, info.asset_id, info.name, info.kind, label, len(drafts),
                     sum(len(d.text) for d in drafts)),
                )
                con.executemany(
                    "INSERT INTO chunks(version_id, ord, label, anchor, text, vector, n_tokens, terms, tfs) "
                    "VALUES (?,?,?,?,?,?,?,?,?)",
                    [
                        (info.version_id, i, label, json.dumps(d.anchor, ensure_ascii=False), d.text,
                         vecs[i].tobytes(), *encoded[i])
                        for i, d in enumerate(drafts)
                    ],
                )
            con.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key='generation'")
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise

    def remove_version(self, version_id: str) -> None:
        con = self._con()
        con.execute("BEGIN IMMEDIATE")
        try:
            con.execute("DELETE FROM chunks WHERE version_id=?", (version_id,))
            con.execute("DELETE FROM versions WHERE version_id=?", (version_id,))
            con.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key='generation'")
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise

    def load(self) -> tuple[int, SearchIndex]:
        """Read everything into a SearchIndex (one consistent snapshot). No tokenising: the BM25
        postings are assembled with numpy from the term ids stored at indexing time."""
        con = self._con()
        con.execute("BEGIN")
        try:
            gen = self.generation()
            versions = {
                r[0]: VersionInfo(r[0], r[1], r[2], r[3], parse_label(r[4]))
                for r in con.execute("SELECT version_id, asset_id, name, kind, label FROM versions")
            }
            vocab = dict(con.execute("SELECT term, id FROM vocab"))
            rows = con.execute(
                "SELECT id, version_id, label, anchor, text, vector, n_tokens, terms, tfs FROM chunks"
            ).fetchall()
        finally:
            con.execute("COMMIT")
        if any(r[7] is None for r in rows):  # rows from a writer that predates migration 2
            con.execute("BEGIN IMMEDIATE")
            try:
                _backfill_bm25(con)
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
            return self.load()
        n = len(rows)
        if not n:
            return gen, SearchIndex([], np.zeros((0, self.dim), dtype=np.float32))
        cols = list(zip(*rows, strict=True))
        labels = {key: parse_label(key) for key in set(cols[2])}
        terms = np.frombuffer(b"".join(cols[7]), dtype=bm25.TERM_DTYPE)
        tfs = np.frombuffer(b"".join(cols[8]), dtype=bm25.TF_DTYPE)
        n_terms = np.fromiter((len(b) for b in cols[7]), dtype=np.int64, count=n) // bm25.TERM_DTYPE.itemsize
        index = SearchIndex.from_columns(
            chunk_ids=np.array(cols[0], dtype=np.int64),
            versions=[versions[v] for v in cols[1]],
            labels=[labels[k] for k in cols[2]],
            anchors=list(cols[3]),
            texts=list(cols[4]),
            vectors=np.frombuffer(b"".join(cols[5]), dtype=np.float32).reshape(n, -1),
            doc_len=np.array(cols[6], dtype=np.float32),
            terms=terms, tfs=tfs, n_terms=n_terms, vocab=vocab,
        )
        return gen, index
