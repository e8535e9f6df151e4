"""Catalog versions -> chunks -> vectors -> the index file, incrementally, with progress."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from casemate.assistant.chunking import chunk_version_text
from casemate.assistant.embedder import Embedder
from casemate.assistant.search import VersionInfo
from casemate.assistant.storage import IndexStore
from casemate.errors import NotFound
from casemate.security.policy import User

INDEXED_KINDS = ("document", "transcript")
EMBED_BATCH = 64  # chunks embedded per call, across versions
Progress = Callable[[int, int], None]  # (versions done, versions to do)


@dataclass(slots=True)
class IndexReport:
    indexed: int = 0
    skipped: int = 0
    chunks: int = 0
    chars: int = 0
    seconds: float = 0.0
    version_ids: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"indexed": self.indexed, "skipped": self.skipped, "chunks": self.chunks,
                "chars": self.chars, "seconds": round(self.seconds, 3),
                "chars_per_second": round(self.chars / self.seconds, 1) if self.seconds > 0 else None}


class Indexer:
    """Indexes what a user may read; each version in one transaction of the index file."""

    def __init__(self, catalog: Any, store: IndexStore, embedder: Embedder) -> None:
        self.catalog = catalog
        self.store = store
        self.embedder = embedder

    def index_versions(self, user: User, versions: Sequence[Any], progress: Progress | None = None) -> IndexReport:
        """Index the given versions the user may read (documents, transcripts) not yet indexed.
        The chunks of several versions are embedded together (up to EMBED_BATCH chunks: the
        embedder sorts them by length); each version is then stored in its own transaction."""
        t0 = time.perf_counter()
        report = IndexReport()
        pending: list[tuple[Any, list[Any]]] = []
        n_pending = 0
        for done, v in enumerate(versions, start=1):
            if v.kind not in INDEXED_KINDS or self.store.has_version(v.id):
                report.skipped += 1
            else:
                try:
                    text = self.catalog.text(user, v.id)
                except NotFound:
                    text = None
                if text is None:
                    report.skipped += 1
                else:
                    drafts = chunk_version_text(v.kind, text, v.metadata)
                    pending.append((v, drafts))
                    n_pending += len(drafts)
            if n_pending >= EMBED_BATCH or done == len(versions):
                self._flush(pending, report)
                pending, n_pending = [], 0
            if progress is not None and not pending:
                progress(done, len(versions))
        report.seconds = time.perf_counter() - t0
        return report

    def _flush(self, pending: list[tuple[Any, list[Any]]], report: IndexReport) -> None:
        texts = [d.text for _, drafts in pending for d in drafts]
        vectors = (self.embedder.embed_passages(texts) if texts
                   else np.zeros((0, self.embedder.dim), dtype=np.float32))
        start = 0
        for v, drafts in pending:
            vecs = vectors[start : start + len(drafts)]
            start += len(drafts)
            self.store.add_version(VersionInfo(v.id, v.asset_id, v.name, v.kind, v.label), drafts, vecs)
            report.indexed += 1
            report.chunks += len(drafts)
            report.chars += sum(len(d.text) for d in drafts)
            report.version_ids.append(v.id)

    def index_all(self, user: User, progress: Progress | None = None) -> IndexReport:
        """Incremental: index every readable document/transcript version not indexed yet."""
        done = self.store.indexed_versions()
        todo = []
        for kind in INDEXED_KINDS:
            todo.extend(v for v in self.catalog.iter_versions(user, kind=kind) if v.id not in done)
        report = self.index_versions(user, todo, progress)
        report.skipped += len(done)
        return report
