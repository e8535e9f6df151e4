"""Framing retrieved text as data, and keeping answers from auto-rendering remote links or images."""

from __future__ import annotations

import re

_IMAGE_MD = re.compile(r"!\[([^\]\n]*)\]\(([^)\n]*)\)")
_LINK_MD = re.compile(r"\[([^\]\n]*)\]\(([^)\n]*)\)")
_REF_DEF = re.compile(r"(?m)^\s{0,3}\[([^\]\n]+)\]:\s*(\S+)")
_SCHEME = re.compile(r"(?i)\b(https?|ftp|file|data|javascript):(//)?")
_TAG = re.compile(r"<(?=/?\s*(?:img|a|iframe|script|link|object|embed|svg|video|audio|source|meta|style)\b)",
                  re.IGNORECASE)
_DELIM = re.compile(r"<{3,}|>{3,}")


def neutralise(text: str) -> str:
    """Markdown images become text, links lose their target's clickability, URLs are defanged and
    HTML tags that fetch or run things are broken, so no client renders anything remote."""
    text = _IMAGE_MD.sub(lambda m: f"[image removed: {m.group(1)}]", text)
    text = _LINK_MD.sub(lambda m: f"{m.group(1)} ({m.group(2)})", text)
    text = _REF_DEF.sub(lambda m: f"[{m.group(1)}]: {m.group(2)}".replace("]:", "] :", 1), text)
    text = _SCHEME.sub(lambda m: f"{m.group(1)}[:]{m.group(2) or ''}", text)
    return _TAG.sub("‹", text)


class StreamNeutraliser:
    """`neutralise` over a token stream: holds back an unfinished `[..](..)` or word until it is whole."""

    HOLD_MAX = 400

    def __init__(self) -> None:
        self._buf = ""

    def feed(self, piece: str) -> str:
        self._buf += piece
        cut = max(self._buf.rfind(" "), self._buf.rfind("\n")) + 1
        opened = max(self._buf.rfind("["), self._buf.rfind("<"))
        if opened >= 0:
            tail = self._buf[opened:]
            closed = ")" in tail or ">" in tail or "\n" in tail
            if not closed and len(tail) < self.HOLD_MAX:
                cut = min(cut, opened)
                if cut > 0 and self._buf[cut - 1] == "!":
                    cut -= 1
        if cut <= 0:
            return ""
        out, self._buf = self._buf[:cut], self._buf[cut:]
        return neutralise(out)

    def flush(self) -> str:
        out, self._buf = self._buf, ""
        return neutralise(out)


def frame_source(text: str) -> str:
    """Source text as inert data: our delimiters cannot be forged from inside a document."""
    return _DELIM.sub(lambda m: m.group(0)[0] * 2, text)
