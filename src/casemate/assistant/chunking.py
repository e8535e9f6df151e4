"""Split a document's text into chunks that keep where they came from (page, section, heading).

Documents: pages are separated by form feeds (what PDF extraction yields), headings are Markdown
`#` lines or legal-style "Article N" / "Titre N" / "Chapitre N" lines. Transcripts: chunks are runs
of segments and the anchor is their time range.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

TARGET_CHARS = 700  # ~160 e5 tokens: well under the 512-token window, small enough to cite
MAX_CHARS = 1000
OVERLAP_CHARS = 120

_HEADING_RE = re.compile(
    r"^\s*(?:#{1,6}\s+(?P<md>.+)|(?P<legal>(?:article|art\.|titre|chapitre|section|chapter|part|partie)"
    r"\s+[\w.\-ᵉʳ]+.*))\s*$",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class ChunkDraft:
    """A piece of text with its anchor, before it is labelled and embedded."""

    text: str
    anchor: dict[str, Any] = field(default_factory=dict)


def format_anchor(anchor: dict[str, Any]) -> str:
    """Human text for an anchor: 'p. 3, Article 6' or '00:01:02-00:01:30'."""
    if "start" in anchor and "end" in anchor:
        return f"{_hms(float(anchor['start']))}-{_hms(float(anchor['end']))}"
    parts = []
    if anchor.get("page"):
        parts.append(f"p. {anchor['page']}")
    if anchor.get("heading"):
        parts.append(str(anchor["heading"]))
    if anchor.get("part", 1) > 1:
        parts.append(f"part {anchor['part']}")
    return ", ".join(parts) or "text"


def _hms(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"


def _split_long(text: str) -> list[str]:
    """Cut text longer than MAX_CHARS at sentence (else word) boundaries, with a little overlap."""
    if len(text) <= MAX_CHARS:
        return [text]
    sentences = re.split(r"(?<=[.!?;:])\s+", text)
    pieces: list[str] = []
    current = ""
    for sentence in sentences:
        while len(sentence) > MAX_CHARS:  # one huge "sentence": cut at a space
            cut = sentence.rfind(" ", 0, TARGET_CHARS)
            cut = cut if cut > 0 else TARGET_CHARS
            if current:
                pieces.append(current)
                current = ""
            pieces.append(sentence[:cut])
            sentence = sentence[cut:].lstrip()
        if current and len(current) + 1 + len(sentence) > TARGET_CHARS:
            pieces.append(current)
            tail = current[-OVERLAP_CHARS:]
            tail = tail[tail.find(" ") + 1 :] if " " in tail else ""
            current = (tail + " " + sentence).strip()
        else:
            current = (current + " " + sentence).strip()
    if current:
        pieces.append(current)
    return pieces


def _flush(buf: list[str], heading: str | None, paragraphs: list[tuple[str | None, str]]) -> None:
    para = " ".join(" ".join(buf).split())
    if para:
        paragraphs.append((heading, para))
    buf.clear()


def chunk_document(text: str) -> list[ChunkDraft]:
    """Chunks of a document's text, each anchored to its page and nearest heading."""
    drafts: list[ChunkDraft] = []
    pages = text.split("\f")
    multi_page = len(pages) > 1
    heading: str | None = None
    for page_no, page in enumerate(pages, start=1):
        paragraphs: list[tuple[str | None, str]] = []  # (heading, paragraph)
        buf: list[str] = []

        for line in page.splitlines():
            match = _HEADING_RE.match(line)
            if match and len(line.strip()) <= 120:
                if buf == [heading]:
                    buf.clear()  # a heading right under another one: no chunk of the bare heading
                _flush(buf, heading, paragraphs)
                heading = (match.group("md") or match.group("legal")).strip()
                buf.append(heading)  # the heading is part of the text: it helps retrieval
            elif not line.strip():
                _flush(buf, heading, paragraphs)
            else:
                buf.append(line.strip())
        _flush(buf, heading, paragraphs)
        # merge small paragraphs under the same heading up to TARGET_CHARS
        merged: list[tuple[str | None, str]] = []
        for head, para in paragraphs:
            if merged and merged[-1][0] == head and len(merged[-1][1]) + 1 + len(para) <= TARGET_CHARS:
                merged[-1] = (head, merged[-1][1] + "\n" + para)
            else:
                merged.append((head, para))
        for head, para in merged:
            pieces = _split_long(para)
            for i, piece in enumerate(pieces, start=1):
                anchor: dict[str, Any] = {}
                if multi_page:
                    anchor["page"] = page_no
                if head:
                    anchor["heading"] = head
                if len(pieces) > 1:
                    anchor["part"] = i
                drafts.append(ChunkDraft(piece, anchor))
    return drafts


def chunk_transcript(text: str | None, segments: list[dict[str, Any]] | None) -> list[ChunkDraft]:
    """Chunks of a transcript: consecutive segments up to TARGET_CHARS, anchored by time range."""
    good = []
    for seg in segments or []:
        try:
            start, end, seg_text = float(seg["start"]), float(seg["end"]), str(seg["text"]).strip()
        except (KeyError, TypeError, ValueError):
            continue  # a malformed segment is skipped; the full text below still covers it
        if seg_text:
            good.append((start, end, seg_text))
    if not good:
        return [ChunkDraft(d.text, {**d.anchor}) for d in chunk_document(text or "")]
    drafts: list[ChunkDraft] = []
    cur_start, cur_end, cur_text = good[0]
    for start, end, seg_text in good[1:]:
        if len(cur_text) + 1 + len(seg_text) > TARGET_CHARS:
            drafts.append(ChunkDraft(cur_text, {"start": cur_start, "end": cur_end}))
            cur_start, cur_end, cur_text = start, end, seg_text
        else:
            cur_end, cur_text = end, cur_text + " " + seg_text
    drafts.append(ChunkDraft(cur_text, {"start": cur_start, "end": cur_end}))
    return drafts


def chunk_version_text(kind: str, text: str | None, metadata: dict[str, Any] | None) -> list[ChunkDraft]:
    """Chunks for a catalog version of `kind` (document or transcript)."""
    if kind == "transcript":
        segments = (metadata or {}).get("segments")
        return chunk_transcript(text, segments if isinstance(segments, list) else None)
    return chunk_document(text or "")
