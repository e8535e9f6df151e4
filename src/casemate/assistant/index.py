"""The assistant's index: chunks with their labels and vectors in one SQLite file, searched in memory.

On disk (ws.home/index/assistant.sqlite): one row per chunk with its version's label, anchor, text
and e5 vector; a version is added or removed in one transaction, so a crash never leaves half a
document. In memory (`SearchIndex`): chunks are sorted by label, so the chunks a user may read are
a union of contiguous slices. The clearance filter picks those slices first (via `can_read`, once
per distinct label); BM25 and the dense dot products then run only inside them. An unreadable chunk
is never scored, ranked, counted in BM25 statistics or copied anywhere, and the dense search is
exact over the readable subset (no approximate-nearest-neighbour recall loss).
"""

from __future__ import annotations

import json
import math
import sqlite3
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from casemate.assistant.chunking import ChunkDraft
from casemate.assistant.textproc import tokenize
from casemate.errors import IntegrityError
from casemate.security.labels import Label, format_label, parse_label
from casemate.security.policy import User, can_read

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS versions (
  version_id TEXT PRIMARY KEY, asset_id TEXT NOT NULL, name TEXT NOT NULL, kind TEXT NOT NULL,
  label TEXT NOT NULL, n_chunks INTEGER NOT NULL, n_chars INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS chunks (
  id INTEGER PRIMARY KEY, version_id TEXT NOT NULL REFERENCES versions(version_id) ON DELETE CASCADE,
  ord INTEGER NOT NULL, label TEXT NOT NULL, anchor TEXT NOT NULL, text TEXT NOT NULL, vector BLOB NOT NULL,
  n_tokens INTEGER, terms BLOB, tfs BLOB
);
CREATE INDEX IF NOT EXISTS chunks_version ON chunks(version_id);
CREATE TABLE IF NOT EXISTS vocab (id INTEGER PRIMARY KEY, term TEXT NOT NULL UNIQUE);
"""
# BM25 input stored per chunk at indexing time, so loading never tokenises: n_tokens (the chunk's
# length in tokens), terms (its distinct term ids, uint32, ascending) and tfs (their counts, uint16)
TERM_DTYPE = np.dtype("<u4")
TF_DTYPE = np.dtype("<u2")

BM25_K1 = 1.2
BM25_B = 0.75
RRF_K = 60


@dataclass(frozen=True, slots=True)
class VersionInfo:
    """What the index keeps about a catalog version (enough to cite it)."""

    version_id: str
    asset_id: str
    name: str
    kind: str
    label: Label


@dataclass(frozen=True, slots=True)
class Hit:
    """One retrieved chunk. Only ever built for chunks the user may read."""

    chunk_id: int
    version_id: str
    asset_id: str
    name: str
    kind: str
    label: Label
    anchor: dict[str, Any]
    text: str
    score: float
    bm25: float
    dense: float

    def to_json(self) -> dict[str, Any]:
        return {
            "chunk_id": self.chunk_id,
            "version_id": self.version_id,
            "asset_id": self.asset_id,
            "name": self.name,
            "kind": self.kind,
            "label": format_label(self.label),
            "anchor": self.anchor,
            "text": self.text,
            "score": round(self.score, 6),
            "bm25": round(self.bm25, 4),
            "dense": round(self.dense, 4),
        }


class IndexStore:
    """The SQLite file. Thread-safe: one connection per thread."""

    def __init__(self, path: Path, dim: int, embedder_name: str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.dim = dim
        self._local = threading.local()
        con = self._con()
        with con:
            con.executescript(SCHEMA)
            con.execute("INSERT OR IGNORE INTO meta VALUES ('generation', '0')")
            con.execute("INSERT OR IGNORE INTO meta VALUES ('embedder', ?)", (embedder_name,))
            con.execute("INSERT OR IGNORE INTO meta VALUES ('dim', ?)", (str(dim),))
        stored = dict(con.execute("SELECT key, value FROM meta").fetchall())
        if stored["embedder"] != embedder_name or int(stored["dim"]) != dim:
            raise IntegrityError(
                f"the index {self.path} was built with embedder {stored['embedder']} (dim {stored['dim']}), "
                f"not {embedder_name} (dim {dim}): delete that file and run `casemate index` to rebuild it"
            )
        self._migrate()

    def _migrate(self, force: bool = False) -> None:
        """Files written before the BM25 columns existed get them (tokenised once, here)."""
        con = self._con()
        cols = {r[1] for r in con.execute("PRAGMA table_info(chunks)")}
        if {"n_tokens", "terms", "tfs"} <= cols and not force:
            return  # every writer of such a file stores the columns with each chunk
        con.execute("BEGIN IMMEDIATE")
        try:
            cols = {r[1] for r in con.execute("PRAGMA table_info(chunks)")}
            for c, sql_type in (("n_tokens", "INTEGER"), ("terms", "BLOB"), ("tfs", "BLOB")):
                if c not in cols:
                    con.execute(f"ALTER TABLE chunks ADD COLUMN {c} {sql_type}")
            rows = con.execute("SELECT id, text FROM chunks WHERE terms IS NULL").fetchall()
            encoded = _encode_bm25(con, [r[1] for r in rows])
            con.executemany("UPDATE chunks SET n_tokens=?, terms=?, tfs=? WHERE id=?",
                            [(*e, r[0]) for e, r in zip(encoded, rows, strict=True)])
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise

    def _con(self) -> sqlite3.Connection:
        con = getattr(self._local, "con", None)
        if con is None:
            con = sqlite3.connect(self.path, timeout=30, isolation_level=None)
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
                bm25 = _encode_bm25(con, [d.text for d in drafts])
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
                         vecs[i].tobytes(), *bm25[i])
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
        if any(r[7] is None for r in rows):  # written by an older release since we opened it
            self._migrate(force=True)
            return self.load()
        n = len(rows)
        if not n:
            return gen, SearchIndex([], np.zeros((0, self.dim), dtype=np.float32))
        cols = list(zip(*rows, strict=True))
        labels = {key: parse_label(key) for key in set(cols[2])}
        terms = np.frombuffer(b"".join(cols[7]), dtype=TERM_DTYPE)
        tfs = np.frombuffer(b"".join(cols[8]), dtype=TF_DTYPE)
        n_terms = np.fromiter((len(b) for b in cols[7]), dtype=np.int64, count=n) // TERM_DTYPE.itemsize
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


def _encode_bm25(con: sqlite3.Connection, texts: Sequence[str]) -> list[tuple[int, bytes, bytes]]:
    """(n_tokens, term ids, counts) per text; new terms get ids in the vocab table (same transaction)."""
    counted = [Counter(tokenize(t)) for t in texts]
    new_terms = sorted({term for c in counted for term in c})
    con.executemany("INSERT OR IGNORE INTO vocab(term) VALUES (?)", [(t,) for t in new_terms])
    ids: dict[str, int] = {}
    for i in range(0, len(new_terms), 500):
        part = new_terms[i : i + 500]
        q = f"SELECT term, id FROM vocab WHERE term IN ({','.join('?' * len(part))})"
        ids.update(con.execute(q, part).fetchall())
    out = []
    for c in counted:
        pairs = sorted((ids[term], min(tf, 65535)) for term, tf in c.items())
        out.append((sum(c.values()), np.array([p[0] for p in pairs], dtype=TERM_DTYPE).tobytes(),
                    np.array([p[1] for p in pairs], dtype=TF_DTYPE).tobytes()))
    return out


@dataclass(frozen=True, slots=True)
class ChunkRecord:
    chunk_id: int
    version: VersionInfo
    label: Label
    anchor: dict[str, Any]
    text: str


class SearchIndex:
    """Immutable in-memory index, partitioned by label (see the module docstring)."""

    def __init__(self, records: Sequence[ChunkRecord], vectors: np.ndarray) -> None:
        """From records (tests, benchmarks): tokenises here, in Python. `IndexStore.load` does not."""
        vocab: dict[str, int] = {}
        terms: list[int] = []
        tfs: list[int] = []
        n_terms, doc_len = [], []
        for r in records:
            c = Counter(tokenize(r.text))
            pairs = sorted((vocab.setdefault(term, len(vocab)), tf) for term, tf in c.items())
            terms.extend(p[0] for p in pairs)
            tfs.extend(p[1] for p in pairs)
            n_terms.append(len(pairs))
            doc_len.append(sum(c.values()))
        self._init(
            chunk_ids=np.array([r.chunk_id for r in records], dtype=np.int64),
            versions=[r.version for r in records], labels=[r.label for r in records],
            anchors=[r.anchor for r in records], texts=[r.text for r in records],
            vectors=np.asarray(vectors, dtype=np.float32).reshape(len(records), -1) if len(records) else vectors,
            doc_len=np.array(doc_len, dtype=np.float32), terms=np.array(terms, dtype=np.int64),
            tfs=np.array(tfs, dtype=np.float32), n_terms=np.array(n_terms, dtype=np.int64), vocab=vocab,
        )

    @classmethod
    def from_columns(cls, **columns: Any) -> SearchIndex:
        """From per-chunk columns (what `IndexStore.load` reads); see `_init` for the names."""
        self = cls.__new__(cls)
        self._init(**columns)
        return self

    def _init(self, *, chunk_ids: np.ndarray, versions: list[VersionInfo], labels: list[Label],
              anchors: list[Any], texts: list[str], vectors: np.ndarray, doc_len: np.ndarray,
              terms: np.ndarray, tfs: np.ndarray, n_terms: np.ndarray, vocab: dict[str, int]) -> None:
        n = len(chunk_ids)
        keys = [format_label(lb) for lb in labels]
        distinct = sorted(set(keys))
        code_of = {k: i for i, k in enumerate(distinct)}
        codes = np.fromiter((code_of[k] for k in keys), dtype=np.int64, count=n)
        order = np.lexsort((chunk_ids, codes))  # by label, then chunk id
        self.chunk_ids = chunk_ids[order]
        self._versions = [versions[i] for i in order]
        self._labels = [labels[i] for i in order]
        self._anchors = [anchors[i] for i in order]  # JSON text until a hit needs it
        self.texts = [texts[i] for i in order]
        self.vectors = np.ascontiguousarray(vectors[order] if n else vectors, dtype=np.float32)
        self.dim = int(self.vectors.shape[1]) if self.vectors.ndim == 2 else 0
        # label partitions: [start, end) per distinct label
        sorted_codes = codes[order]
        bounds = np.searchsorted(sorted_codes, np.arange(len(distinct) + 1))
        self.labels: list[Label] = [parse_label(k) for k in distinct]
        self.ranges: list[tuple[int, int]] = [(int(bounds[i]), int(bounds[i + 1])) for i in range(len(distinct))]
        # BM25: per-chunk lengths, then postings (per term, sorted chunk positions and frequencies)
        self.doc_len = np.asarray(doc_len, dtype=np.float32)[order] if n else np.zeros(0, np.float32)
        self._len_cumsum = np.concatenate([[0.0], np.cumsum(self.doc_len, dtype=np.float64)])
        self.vocab = vocab
        n_vocab = max(vocab.values(), default=-1) + 1
        if len(terms):
            position = np.empty(n, dtype=np.int64)
            position[order] = np.arange(n)
            t_arr = np.asarray(terms, dtype=np.int64)
            d_arr = np.repeat(position, n_terms)
            o = np.argsort(t_arr * max(n, 1) + d_arr)  # by term, then chunk position
            self._post_docs = d_arr[o]
            self._post_tf = np.asarray(tfs, dtype=np.float32)[o]
            self._post_ptr = np.searchsorted(t_arr[o], np.arange(n_vocab + 1))
        else:
            self._post_docs = np.zeros(0, dtype=np.int64)
            self._post_tf = np.zeros(0, dtype=np.float32)
            self._post_ptr = np.zeros(n_vocab + 1, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.chunk_ids)

    def _anchor(self, pos: int) -> dict[str, Any]:
        a = self._anchors[pos]
        return json.loads(a) if isinstance(a, str) else a

    def allowed_ranges(self, user: User) -> list[tuple[int, int]]:
        """The slices of chunks `user` may read: the one place the policy is asked."""
        return [rng for label, rng in zip(self.labels, self.ranges, strict=True) if can_read(user, label)]

    def search(self, user: User, query_vector: np.ndarray | None, query: str, k: int = 10,
               candidates: int = 50) -> list[Hit]:
        """Hybrid search (BM25 + exact dense, fused by reciprocal rank) among readable chunks only."""
        ranges = self.allowed_ranges(user)
        if not ranges or k <= 0:
            return []
        n_cand = max(candidates, k)
        bm25_pos, bm25_scores = self._bm25(ranges, tokenize(query))
        dense_pos, dense_scores = self._dense(ranges, query_vector)
        fused: dict[int, float] = {}
        b_by_pos: dict[int, float] = {}
        d_by_pos: dict[int, float] = {}
        for positions, scores, store in ((bm25_pos, bm25_scores, b_by_pos), (dense_pos, dense_scores, d_by_pos)):
            if len(scores) == 0:
                continue
            top = _top(scores, n_cand)
            for rank, j in enumerate(top):
                pos = int(positions[j])
                store[pos] = float(scores[j])
                fused[pos] = fused.get(pos, 0.0) + 1.0 / (RRF_K + rank + 1)
        best = sorted(fused.items(), key=lambda kv: (-kv[1], kv[0]))[:k]
        hits = []
        for pos, score in best:
            label = self._labels[pos]
            if not can_read(user, label):  # belt and braces: cannot happen by construction
                continue
            dense = d_by_pos.get(pos)
            if dense is None and query_vector is not None:
                dense = float(self.vectors[pos] @ query_vector)
            v = self._versions[pos]
            hits.append(
                Hit(int(self.chunk_ids[pos]), v.version_id, v.asset_id, v.name, v.kind, label, self._anchor(pos),
                    self.texts[pos], score, b_by_pos.get(pos, 0.0), dense if dense is not None else 0.0)
            )
        return hits
    def _bm25(self, ranges: list[tuple[int, int]], terms: list[str]) -> tuple[np.ndarray, np.ndarray]:
        if not terms:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        n_docs = sum(e - s for s, e in ranges)
        total_len = sum(self._len_cumsum[e] - self._len_cumsum[s] for s, e in ranges)
        avgdl = max(total_len / max(n_docs, 1), 1.0)
        pos_parts, score_parts = [], []
        for term in dict.fromkeys(terms):  # unique, in order
            tid = self.vocab.get(term)
            if tid is None:
                continue
            lo, hi = int(self._post_ptr[tid]), int(self._post_ptr[tid + 1])
            docs = self._post_docs[lo:hi]
            # the postings inside the readable slices, found by binary search: nothing else is read
            sel = [(lo + int(np.searchsorted(docs, s)), lo + int(np.searchsorted(docs, e))) for s, e in ranges]
            d = np.concatenate([self._post_docs[a:b] for a, b in sel])
            if len(d) == 0:
                continue
            tf = np.concatenate([self._post_tf[a:b] for a, b in sel])
            df = len(d)
            idf = math.log(1.0 + (n_docs - df + 0.5) / (df + 0.5))
            dl = self.doc_len[d]
            score_parts.append(idf * tf * (BM25_K1 + 1) / (tf + BM25_K1 * (1 - BM25_B + BM25_B * dl / avgdl)))
            pos_parts.append(d)
        if not pos_parts:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        pos = np.concatenate(pos_parts)
        uniq, inverse = np.unique(pos, return_inverse=True)
        return uniq, np.bincount(inverse, weights=np.concatenate(score_parts)).astype(np.float32)

    def _dense(self, ranges: list[tuple[int, int]], q: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        if q is None or self.dim == 0 or not ranges:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        q = np.asarray(q, dtype=np.float32)
        scores = np.concatenate([self.vectors[s:e] @ q for s, e in ranges])
        positions = np.concatenate([np.arange(s, e) for s, e in ranges])
        return positions, scores


def _top(scores: np.ndarray, n: int) -> np.ndarray:
    """Indices of the n highest scores, best first (ties by position for determinism)."""
    if len(scores) > n:
        part = np.argpartition(-scores, n - 1)[:n]
    else:
        part = np.arange(len(scores))
    return part[np.lexsort((part, -scores[part]))]

