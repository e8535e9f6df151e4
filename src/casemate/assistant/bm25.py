"""BM25: what is stored per chunk at indexing time, and scoring over postings restricted to slices.

A chunk's BM25 input is kept as term ids (uint32, ascending) and their counts (uint16), so loading
an index never tokenises. Scoring reads only the postings that fall inside the given slices
(`[start, end)` chunk positions), and computes document frequencies and the average length inside
them: scores leak nothing about chunks outside the slices.
"""

from __future__ import annotations

import math
import sqlite3
from collections import Counter
from collections.abc import Sequence

import numpy as np

from casemate.assistant.textproc import tokenize

TERM_DTYPE = np.dtype("<u4")
TF_DTYPE = np.dtype("<u2")
K1 = 1.2
B = 0.75


def encode_chunks(con: sqlite3.Connection, texts: Sequence[str]) -> list[tuple[int, bytes, bytes]]:
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


class Postings:
    """Per term, the sorted chunk positions holding it and their frequencies."""

    def __init__(self, positions: np.ndarray, doc_len: np.ndarray, terms: np.ndarray, tfs: np.ndarray,
                 n_terms: np.ndarray, vocab: dict[str, int]) -> None:
        """`positions[i]` is where chunk i (in input order) sits; `terms`/`tfs` are the chunks' term
        ids and counts concatenated, `n_terms[i]` how many belong to chunk i."""
        n = len(positions)
        self.vocab = vocab
        self.doc_len = np.asarray(doc_len, dtype=np.float32)
        self._len_cumsum = np.concatenate([[0.0], np.cumsum(self.doc_len, dtype=np.float64)])
        n_vocab = max(vocab.values(), default=-1) + 1
        if len(terms):
            t_arr = np.asarray(terms, dtype=np.int64)
            d_arr = np.repeat(positions, n_terms)
            o = np.argsort(t_arr * max(n, 1) + d_arr)  # by term, then chunk position
            self._docs = d_arr[o]
            self._tf = np.asarray(tfs, dtype=np.float32)[o]
            self._ptr = np.searchsorted(t_arr[o], np.arange(n_vocab + 1))
        else:
            self._docs = np.zeros(0, dtype=np.int64)
            self._tf = np.zeros(0, dtype=np.float32)
            self._ptr = np.zeros(n_vocab + 1, dtype=np.int64)

    def idf(self, ranges: list[tuple[int, int]], terms: list[str]) -> dict[str, float]:
        """Each term's BM25 inverse document frequency among the chunks inside `ranges` only (a term
        that no readable chunk holds gets the highest value)."""
        n_docs = sum(e - s for s, e in ranges)
        out: dict[str, float] = {}
        for term in dict.fromkeys(terms):
            tid = self.vocab.get(term)
            df = 0
            if tid is not None and tid + 1 < len(self._ptr):
                lo, hi = int(self._ptr[tid]), int(self._ptr[tid + 1])
                docs = self._docs[lo:hi]
                df = sum(int(np.searchsorted(docs, e)) - int(np.searchsorted(docs, s)) for s, e in ranges)
            out[term] = math.log(1.0 + (n_docs - df + 0.5) / (df + 0.5))
        return out

    def score(self, ranges: list[tuple[int, int]], terms: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(positions, scores) of the chunks inside `ranges` that hold at least one of `terms`."""
        empty = np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        if not terms or not ranges:
            return empty
        n_docs = sum(e - s for s, e in ranges)
        total_len = sum(self._len_cumsum[e] - self._len_cumsum[s] for s, e in ranges)
        avgdl = max(total_len / max(n_docs, 1), 1.0)
        pos_parts, score_parts = [], []
        for term in dict.fromkeys(terms):  # unique, in order
            tid = self.vocab.get(term)
            if tid is None or tid + 1 >= len(self._ptr):
                continue
            lo, hi = int(self._ptr[tid]), int(self._ptr[tid + 1])
            docs = self._docs[lo:hi]
            # the postings inside the readable slices, found by binary search: nothing else is read
            sel = [(lo + int(np.searchsorted(docs, s)), lo + int(np.searchsorted(docs, e))) for s, e in ranges]
            d = np.concatenate([self._docs[a:b] for a, b in sel])
            if len(d) == 0:
                continue
            tf = np.concatenate([self._tf[a:b] for a, b in sel])
            df = len(d)
            idf = math.log(1.0 + (n_docs - df + 0.5) / (df + 0.5))
            dl = self.doc_len[d]
            score_parts.append(idf * tf * (K1 + 1) / (tf + K1 * (1 - B + B * dl / avgdl)))
            pos_parts.append(d)
        if not pos_parts:
            return empty
        pos = np.concatenate(pos_parts)
        uniq, inverse = np.unique(pos, return_inverse=True)
        return uniq, np.bincount(inverse, weights=np.concatenate(score_parts)).astype(np.float32)
