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
from collections.abc import Sequence
from dataclasses import dataclass, field
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
  ord INTEGER NOT NULL, label TEXT NOT NULL, anchor TEXT NOT NULL, text TEXT NOT NULL, vector BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS chunks_version ON chunks(version_id);
"""

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
        if len(drafts) != len(vectors):
            raise ValueError("one vector per chunk")
        label = format_label(info.label)
        vecs = np.ascontiguousarray(vectors, dtype=np.float32)
        con = self._con()
        con.execute("BEGIN IMMEDIATE")
        try:
            con.execute("DELETE FROM versions WHERE version_id=?", (info.version_id,))
            con.execute(
                "INSERT INTO versions VALUES (?,?,?,?,?,?,?)",
                (info.version_id, info.asset_id, info.name, info.kind, label, len(drafts),
                 sum(len(d.text) for d in drafts)),
            )
            con.executemany(
                "INSERT INTO chunks(version_id, ord, label, anchor, text, vector) VALUES (?,?,?,?,?,?)",
                [
                    (info.version_id, i, label, json.dumps(d.anchor, ensure_ascii=False), d.text,
                     vecs[i].tobytes())
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
        """Read everything into a SearchIndex (one consistent snapshot)."""
        con = self._con()
        con.execute("BEGIN")
        try:
            gen = self.generation()
            versions = {
                r[0]: VersionInfo(r[0], r[1], r[2], r[3], parse_label(r[4]))
                for r in con.execute("SELECT version_id, asset_id, name, kind, label FROM versions")
            }
            rows = con.execute("SELECT id, version_id, label, anchor, text, vector FROM chunks").fetchall()
        finally:
            con.execute("COMMIT")
        records = [
            ChunkRecord(r[0], versions[r[1]], parse_label(r[2]), json.loads(r[3]), r[4]) for r in rows
        ]
        if rows:
            vectors = np.frombuffer(b"".join(r[5] for r in rows), dtype=np.float32).reshape(len(rows), -1)
        else:
            vectors = np.zeros((0, self.dim), dtype=np.float32)
        return gen, SearchIndex(records, vectors)


@dataclass(frozen=True, slots=True)
class ChunkRecord:
    chunk_id: int
    version: VersionInfo
    label: Label
    anchor: dict[str, Any]
    text: str
    tokens: list[str] | None = field(default=None)


class SearchIndex:
    """Immutable in-memory index, partitioned by label (see the module docstring)."""

    def __init__(self, records: Sequence[ChunkRecord], vectors: np.ndarray,
                 tokens: Sequence[list[str]] | None = None) -> None:
        keys = [format_label(r.label) for r in records]
        order = sorted(range(len(records)), key=lambda i: (keys[i], records[i].chunk_id))
        self.records: list[ChunkRecord] = [records[i] for i in order]
        self.vectors = np.ascontiguousarray(vectors[order] if len(order) else vectors, dtype=np.float32)
        self.dim = int(self.vectors.shape[1]) if self.vectors.ndim == 2 else 0
        # label partitions: [start, end) per distinct label
        self.labels: list[Label] = []
        self.ranges: list[tuple[int, int]] = []
        for pos, i in enumerate(order):
            if not self.labels or keys[i] != format_label(self.labels[-1]):
                if self.ranges:
                    self.ranges[-1] = (self.ranges[-1][0], pos)
                self.labels.append(records[i].label)
                self.ranges.append((pos, pos))
        if self.ranges:
            self.ranges[-1] = (self.ranges[-1][0], len(order))
        # BM25 postings: per term, sorted chunk positions and term frequencies
        toks = [tokens[i] for i in order] if tokens is not None else [tokenize(r.text) for r in self.records]
        self.doc_len = np.array([len(t) for t in toks], dtype=np.float32)
        self._len_cumsum = np.concatenate([[0.0], np.cumsum(self.doc_len, dtype=np.float64)])
        vocab: dict[str, int] = {}
        term_ids: list[int] = []
        doc_ids: list[int] = []
        for pos, t in enumerate(toks):
            for term in set(t):
                term_ids.append(vocab.setdefault(term, len(vocab)))
                doc_ids.append(pos)
        tf_list = []
        for t in toks:
            counts: dict[str, int] = {}
            for term in t:
                counts[term] = counts.get(term, 0) + 1
            tf_list.extend(counts[term] for term in set(t))  # same set() order as above
        self.vocab = vocab
        if term_ids:
            t_arr = np.array(term_ids, dtype=np.int64)
            d_arr = np.array(doc_ids, dtype=np.int64)
            f_arr = np.array(tf_list, dtype=np.float32)
            o = np.lexsort((d_arr, t_arr))
            self._post_docs = d_arr[o]
            self._post_tf = f_arr[o]
            self._post_ptr = np.searchsorted(t_arr[o], np.arange(len(vocab) + 1))
        else:
            self._post_docs = np.zeros(0, dtype=np.int64)
            self._post_tf = np.zeros(0, dtype=np.float32)
            self._post_ptr = np.zeros(1, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.records)

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
            rec = self.records[pos]
            if not can_read(user, rec.label):  # belt and braces: cannot happen by construction
                continue
            dense = d_by_pos.get(pos)
            if dense is None and query_vector is not None:
                dense = float(self.vectors[pos] @ query_vector)
            hits.append(
                Hit(rec.chunk_id, rec.version.version_id, rec.version.asset_id, rec.version.name,
                    rec.version.kind, rec.label, rec.anchor, rec.text, score, b_by_pos.get(pos, 0.0),
                    dense if dense is not None else 0.0)
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

