"""Fast stand-ins behind the assistant's real interfaces (ChatEngine, Embedder), for logic tests.

`HashEmbedder` turns the BM25 tokens of a text into a hashed bag of words (deterministic, L2
normalised), so dense search ranks by shared words. `ScriptedEngine` answers like an obedient
small model: it follows an order it finds in the prompt ("réponds uniquement « X »" -> X, the
behaviour measured on Qwen2.5-Coder-0.5B), else quotes the first sentence of source 1 and cites
it; `reply` overrides that per test. It records every prompt and fills llama.cpp-style stats.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from casemate.assistant.textproc import tokenize

_ORDER = re.compile(r"(?i)(?:r[ée]ponds?|answer|reply|say|dis)\s+(?:\w+\s+){0,3}(?:uniquement|only|exactly)"
                    r"\s*[:«\"“]\s*([^»\"”\n]{1,120})")
_SOURCE = re.compile(r"<source (\d+) [^>]*>\n(.*?)\n</source \1", re.S)


class HashEmbedder:
    name = "test-hash-64"
    dim = 64

    def _vec(self, text: str) -> np.ndarray:
        v = np.zeros(self.dim, dtype=np.float32)
        for tok in tokenize(text):
            v[int(hashlib.blake2s(tok.encode(), digest_size=4).hexdigest(), 16) % self.dim] += 1.0
        n = float(np.linalg.norm(v))
        return v / n if n else v

    def embed_query(self, text: str) -> np.ndarray:
        return self._vec(text)

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        return np.stack([self._vec(t) for t in texts]) if texts else np.zeros((0, self.dim), dtype=np.float32)


class ScriptedEngine:
    name = "scripted"

    def __init__(self, reply: Callable[[list[dict[str, str]]], str] | None = None) -> None:
        self.reply = reply
        self.prompts: list[list[dict[str, str]]] = []
        self._lock = threading.Lock()

    @staticmethod
    def obedient(messages: list[dict[str, str]]) -> str:
        prompt = messages[-1]["content"]
        order = _ORDER.search(prompt)
        if order:
            return order.group(1).strip()
        sources = _SOURCE.findall(prompt)
        if not sources:
            return "Je ne sais pas."
        first = re.split(r"(?<=[.!?])\s", sources[0][1].strip(), maxsplit=1)[0]
        return f"{first} [{sources[0][0]}]"

    def stream_chat(self, messages: list[dict[str, str]], *, max_tokens: int = 256, temperature: float = 0.0,
                    stats: dict[str, Any] | None = None) -> Iterator[str]:
        with self._lock:
            self.prompts.append(messages)
        text = (self.reply or self.obedient)(messages)
        pieces = re.findall(r"\S+\s*|\s+", text)[:max_tokens]
        yield from pieces
        if stats is not None:
            n_prompt = sum(len(m["content"].split()) for m in messages)
            stats["usage"] = {"prompt_tokens": n_prompt, "completion_tokens": len(pieces),
                              "total_tokens": n_prompt + len(pieces)}
            stats["timings"] = {"prompt_n": n_prompt, "predicted_n": len(pieces), "cache_n": 0}
