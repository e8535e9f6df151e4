"""Fast stand-ins for the models the console tests do not exercise: a hashed-words embedder, an
engine that answers citing source [1], and an ingest hook that indexes with the test's assistant."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

ASSISTANT: dict[str, Any] = {}


class HashEmbedder:
    name = "test-hash-embedder"
    dim = 64

    def _vec(self, text: str) -> np.ndarray:
        v = np.zeros(self.dim, dtype=np.float32)
        for word in text.lower().split():
            v[int(hashlib.sha256(word.encode()).hexdigest()[:8], 16) % self.dim] += 1.0
        n = float(np.linalg.norm(v))
        return v / n if n else v

    def embed_query(self, text: str) -> np.ndarray:
        return self._vec(text)

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        return np.stack([self._vec(t) for t in texts]) if texts else np.zeros((0, self.dim), dtype=np.float32)


class CitingEngine:
    name = "test-citing-engine"

    def stream_chat(self, messages: list[dict[str, str]], *, max_tokens: int = 256, temperature: float = 0.0,
                    stats: dict[str, Any] | None = None) -> Iterator[str]:
        yield from ("Le convoi ", "part mardi ", "du dépôt nord [1].")


def after_ingest(ws: Any, user: Any, versions: Sequence[Any]) -> None:
    """The assistant's indexing hook, through the test's assistant (same embedder as its searches)."""
    from casemate.assistant.pipeline import INDEXED_KINDS

    todo = [v for v in versions if v.kind in INDEXED_KINDS]
    if todo:
        ASSISTANT["a"].index_versions(user, todo)

# Shared by the fixtures and the tests (a module of its own: `conftest` is not importable by name
# when several test folders are collected together).
PASSWORDS = {n: f"pw-{n}-correct-horse" for n in ("nina", "dora", "olga", "adam")}
CANARY = {"text": "CANARYTEXT5521", "name": "CANARYNAME-tempete", "det": "CANARYCLASS", "comp": "ZULU"}
