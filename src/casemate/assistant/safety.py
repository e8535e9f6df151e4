"""Keeping answers from auto-rendering remote links or images.

The guarantee rests on a few local sequences, not on recognising whole Markdown constructs (nested
brackets and multi-line link texts defeat such regexes): after `neutralise` no "](" (inline link
or image), no "]:" (reference definition), no "<" before a letter, "/", "!" or "?" (HTML tag,
autolink), and no bare URL scheme or "www." survives. `find_active` checks exactly that.
"""

from __future__ import annotations

import re

_IMAGE_MD = re.compile(r"!\[([^\]\n]*)\]\(([^)\n]*)\)")
_LINK_MD = re.compile(r"\[([^\]\n]*)\]\(([^)\n]*)\)")
_SCHEMES = ("https", "http", "ftp", "file", "data", "javascript", "mailto", "xmpp")
_SCHEME = re.compile(r"(?i)\b(" + "|".join(_SCHEMES) + r"):")
_WWW = re.compile(r"(?i)\bwww\.")
_BRACKET = re.compile(r"\](?=[(:])")
_TAG = re.compile(r"<(?=[A-Za-z/!?])")
# what may still become a link once more text arrives: an open "[..", "[..]", "[..](..", after an
# optional "!" (held only for a nicer rendering: safety does not depend on it)
_PENDING_LINK = re.compile(r"!?\[[^\]\n]{0,200}(?:\](?:\([^)\n]{0,300})?)?\Z")
_HOLD_WORDS = (*_SCHEMES, "www")
_TRAILING_WORD = re.compile(r"(?<!\w)(\w{1,10})[:.]?\Z")
_ACTIVE = re.compile(
    r"\]\(|\]:|<[A-Za-z/!?]|(?i:\b(?:" + "|".join(_SCHEMES) + r"):)|(?i:\bwww\.)"
)


def neutralise(text: str) -> str:
    """Markdown images become text, links lose their target's clickability, URLs are defanged and
    HTML tags are broken, so no client renders anything remote."""
    # (replacements never end in "]": the next piece could start with "(")
    text = _IMAGE_MD.sub(lambda m: f"(image removed: {m.group(1)})", text)
    text = _LINK_MD.sub(lambda m: f"{m.group(1)} ({m.group(2)})", text)
    text = _SCHEME.sub(lambda m: f"{m.group(1)}[:]", text)
    text = _WWW.sub(lambda m: m.group(0)[:3] + "[.]", text)
    text = _BRACKET.sub("] ", text)  # what the passes above did not recognise (nesting...) or made
    return _TAG.sub("‹", text)


def find_active(text: str) -> str | None:
    """The first sequence that could make a Markdown/HTML client link or fetch something, or None."""
    m = _ACTIVE.search(text)
    return m.group(0) if m else None


class StreamNeutraliser:
    """`neutralise` over a token stream, holding back only what the next piece could make active.

    A piece is released at once unless its end could still grow into a dangerous sequence: a
    trailing "]" or "<" or "!", a trailing word that starts a URL scheme or "www", or an unfinished
    "[text](target)". So the first token is not delayed to the end of its word, and a remote link
    split across pieces is still caught (`find_active` on the concatenation finds nothing).
    """

    def __init__(self) -> None:
        self._buf = ""

    def feed(self, piece: str) -> str:
        buf = self._buf + piece
        cut = len(buf) - self._hold(buf)
        while cut > 0 and buf[cut - 1] in "]<!":  # never release a char the held part could complete
            cut -= 1
        if cut <= 0:
            self._buf = buf
            return ""
        out, self._buf = buf[:cut], buf[cut:]
        return neutralise(out)

    @staticmethod
    def _hold(buf: str) -> int:
        """How many trailing characters of `buf` must wait for the next piece."""
        hold = 0
        opened = buf.rfind("[")
        if opened >= 0:
            start = opened - 1 if opened > 0 and buf[opened - 1] == "!" else opened
            if _PENDING_LINK.match(buf, start):
                hold = len(buf) - start
        if buf[-1:] in ("]", "<", "!"):
            hold = max(hold, 1)
        # a trailing word that starts a scheme ("ht", "http", "http:", "www."): its defanged form
        # "http[:]" must not meet a "(" from the next piece, nor "ht" miss its "tp:"
        m = _TRAILING_WORD.search(buf)
        if m and any(w.startswith(m.group(1).lower()) for w in _HOLD_WORDS):
            hold = max(hold, len(m.group(0)))
        return hold

    def flush(self) -> str:
        out, self._buf = self._buf, ""
        return neutralise(out)

