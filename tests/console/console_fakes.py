"""Fast stand-ins for the models the console tests do not exercise: a hashed-words embedder, an
engine that answers citing source [1], and an ingest hook that indexes with the test's assistant."""

from __future__ import annotations

import io
import math
import struct
from collections.abc import Iterator, Sequence
from typing import Any

from casemate_fakes import HashEmbedder  # noqa: F401  (re-exported for the console fixtures)

ASSISTANT: dict[str, Any] = {}


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


def wav_bytes(seconds: float = 4.0, rate: int = 8000) -> bytes:
    n = int(seconds * rate)
    frames = b"".join(struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * i / rate))) for i in range(n))
    head = b"RIFF" + struct.pack("<I", 36 + len(frames)) + b"WAVEfmt " + struct.pack(
        "<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16) + b"data" + struct.pack("<I", len(frames))
    return head + frames


def png_bytes(w: int, h: int) -> bytes:
    from PIL import Image, ImageDraw

    im = Image.new("RGB", (w, h), (40, 70, 40))
    d = ImageDraw.Draw(im)
    for i in range(0, w, 64):
        d.line([(i, 0), (i, h)], fill=(60, 90, 60))
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()
