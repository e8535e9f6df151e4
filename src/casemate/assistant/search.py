"""The in-memory index: chunks sorted by label, searched (BM25 + exact dense) inside readable slices.

Chunks are sorted by label, so the chunks a user may read are a union of contiguous slices. The
clearance filter picks those slices first (via `can_read`, once per distinct label); BM25 and the
dense dot products then run only inside them. An unreadable chunk is never scored, ranked, counted
in BM25 statistics or copied anywhere, and the dense search is exact over the readable subset (no
approximate-nearest-neighbour recall loss).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from casemate.assistant.bm25 import Postings
from casemate.assistant.textproc import tokenize
from casemate.security.labels import Label, format_label, parse_label
from casemate.security.policy import User, can_read

# reciprocal-rank fusion: BM25 at half the weight of the dense ranking, k = 10; the best of a
# grid on both CNIL sets with both embedders (docs/benchmarks.md, "Retrieval and indexing speed")
RRF_K = 10
BM25_WEIGHT = 0.5


@dataclass(frozen=True, slots=True)
class Fusion:
    """How BM25 and dense rankings are combined: weighted reciprocal-rank fusion. A zero weight
    drops that ranking (its score is still reported on the hits, for the relevance test)."""

    bm25: float = BM25_WEIGHT
    dense: float = 1.0
    k: int = RRF_K  # the reciprocal-rank constant: 1 / (k + rank)

    @classmethod
    def named(cls, name: str) -> Fusion:
        table = {"hybrid": cls(), "bm25": cls(1.0, 0.0), "dense": cls(0.0, 1.0)}
        if name not in table:
            raise ValueError(f"unknown ranking {name!r}: use one of {', '.join(table)}")
        return table[name]


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
        position = np.empty(n, dtype=np.int64)
        position[order] = np.arange(n)
        sorted_len = np.asarray(doc_len, dtype=np.float32)[order] if n else np.zeros(0, np.float32)
        self.bm25 = Postings(position, sorted_len, terms, tfs, n_terms, vocab)

    def __len__(self) -> int:
        return len(self.chunk_ids)

    def _anchor(self, pos: int) -> dict[str, Any]:
        a = self._anchors[pos]
        return json.loads(a) if isinstance(a, str) else a

    def allowed_ranges(self, user: User) -> list[tuple[int, int]]:
        """The slices of chunks `user` may read: the one place the policy is asked."""
        return [rng for label, rng in zip(self.labels, self.ranges, strict=True) if can_read(user, label)]

    def idf(self, user: User, terms: list[str]) -> dict[str, float]:
        """BM25 inverse document frequencies of `terms` over the chunks `user` may read, nothing else."""
        return self.bm25.idf(self.allowed_ranges(user), terms)

    def search(self, user: User, query_vector: np.ndarray | None, query: str, k: int = 10,
               candidates: int = 50, fusion: Fusion = Fusion()) -> list[Hit]:
        """BM25 + exact dense, fused by weighted reciprocal rank, among readable chunks only."""
        ranges = self.allowed_ranges(user)
        if not ranges or k <= 0:
            return []
        n_cand = max(candidates, k)
        bm25_pos, bm25_scores = self.bm25.score(ranges, tokenize(query))
        dense_pos, dense_scores = self._dense(ranges, query_vector)
        fused: dict[int, float] = {}
        b_by_pos: dict[int, float] = {}
        d_by_pos: dict[int, float] = {}
        for positions, scores, store, weight in ((bm25_pos, bm25_scores, b_by_pos, fusion.bm25),
                                                 (dense_pos, dense_scores, d_by_pos, fusion.dense)):
            if len(scores) == 0:
                continue
            top = _top(scores, n_cand)
            for rank, j in enumerate(top):
                pos = int(positions[j])
                store[pos] = float(scores[j])
                if weight > 0:
                    fused[pos] = fused.get(pos, 0.0) + weight / (fusion.k + rank + 1)
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
