"""Kind detection (content first, then extension) and text extraction for documents.

Extraction refuses what it cannot read faithfully (encrypted or truncated PDF, a DOCX that would
inflate past the limits) with a message saying what to do; it never stores partial text.
"""

from __future__ import annotations

import io
import logging
import zipfile
import zlib
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

from casemate.errors import UsageError

DOC_EXT = {".pdf", ".docx", ".txt", ".md", ".markdown", ".html", ".htm", ".text", ".rst"}
IMAGE_EXT = {".tif", ".tiff", ".png", ".jpg", ".jpeg"}
AUDIO_EXT = {".wav", ".flac", ".mp3", ".ogg", ".oga", ".opus"}
TELEMETRY_EXT = {".csv", ".jsonl", ".ndjson"}

DOCX_MAX_UNCOMPRESSED = 256 * 1024 * 1024
DOCX_MAX_RATIO = 200
DOCX_MAX_MEMBERS = 10_000
MAX_TEXT_CHARS = 50_000_000

logging.getLogger("pypdf").setLevel(logging.ERROR)


class ExtractError(UsageError):
    """A file that cannot be ingested as what it claims to be."""


@dataclass
class Sniffed:
    kind: str
    fmt: str  # pdf, docx, txt, md, html, tiff, png, jpeg, wav, flac, mp3, ogg, csv, jsonl, bin


def sniff(head: bytes, name: str) -> Sniffed:
    ext = Path(name).suffix.lower()
    if head.startswith(b"%PDF-"):
        return Sniffed("document", "pdf")
    if head.startswith(b"PK\x03\x04") and ext == ".docx":
        return Sniffed("document", "docx")
    if head.startswith((b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")):
        return Sniffed("image", "tiff")
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return Sniffed("image", "png")
    if head.startswith(b"\xff\xd8\xff"):
        return Sniffed("image", "jpeg")
    if head.startswith(b"RIFF") and head[8:12] == b"WAVE":
        return Sniffed("audio", "wav")
    if head.startswith(b"fLaC"):
        return Sniffed("audio", "flac")
    if head.startswith(b"OggS"):
        return Sniffed("audio", "ogg")
    if head.startswith(b"ID3") or (len(head) > 1 and head[0] == 0xFF and (head[1] & 0xE0) == 0xE0 and ext == ".mp3"):
        return Sniffed("audio", "mp3")
    # No magic number: trust the extension only for text formats, and only if it looks like text.
    looks_text = b"\x00" not in head[:4096]
    if looks_text:
        if ext in (".html", ".htm"):
            return Sniffed("document", "html")
        if ext in (".md", ".markdown"):
            return Sniffed("document", "md")
        if ext in (".txt", ".text", ".rst"):
            return Sniffed("document", "txt")
        if ext == ".csv":
            return Sniffed("telemetry", "csv")
        if ext in (".jsonl", ".ndjson"):
            return Sniffed("telemetry", "jsonl")
        low = head[:512].lstrip().lower()
        if low.startswith((b"<!doctype html", b"<html")):
            return Sniffed("document", "html")
    if ext in DOC_EXT | IMAGE_EXT | AUDIO_EXT:
        raise ExtractError(
            f"content does not match its extension {ext!r} (damaged or mislabelled file): "
            "check the file or rename it"
        )
    return Sniffed("other", "bin")


def decode_text(data: bytes) -> str:
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")


class _HTMLText(HTMLParser):
    SKIP = {"script", "style", "noscript", "template"}
    BLOCK = {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "section", "article", "table"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs) -> None:  # type: ignore[no-untyped-def]
        if tag in self.SKIP:
            self._skip += 1
        elif tag in self.BLOCK:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self.SKIP and self._skip:
            self._skip -= 1
        elif tag in self.BLOCK:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


def html_to_text(html: str) -> str:
    p = _HTMLText()
    p.feed(html)
    p.close()
    lines = [" ".join(line.split()) for line in "".join(p.parts).splitlines()]
    return "\n".join(line for line in lines if line)


def pdf_text(data: bytes) -> tuple[str, dict]:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError, PyPdfError

    if b"%%EOF" not in data[-2048:]:
        raise ExtractError("truncated PDF (no end-of-file marker): copy the complete file again")
    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted:
            raise ExtractError("encrypted PDF: remove the password (or decrypt it) before ingesting")
        pages = []
        for page in reader.pages:
            pages.append(page.extract_text() or "")
    except ExtractError:
        raise
    except (PdfReadError, PyPdfError, ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
        raise ExtractError(f"unreadable PDF ({type(exc).__name__}: {exc}): check or re-export the file") from None
    # Pages are separated by form feeds so the assistant can anchor chunks on page numbers.
    return "\f".join(pages), {"pages": len(pages)}


def docx_text(data: bytes) -> tuple[str, dict]:
    from defusedxml import ElementTree as DET

    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, ValueError, EOFError, OSError, NotImplementedError):
        raise ExtractError("damaged DOCX (not a valid zip archive): re-save the document") from None
    with zf:
        infos = zf.infolist()
        if len(infos) > DOCX_MAX_MEMBERS:
            raise ExtractError(f"DOCX holds {len(infos)} parts: refused as a possible zip bomb")
        total = sum(i.file_size for i in infos)
        packed = max(1, sum(i.compress_size for i in infos))
        if total > DOCX_MAX_UNCOMPRESSED or total / packed > DOCX_MAX_RATIO:
            raise ExtractError(
                f"DOCX would inflate to {total} bytes from {packed} (ratio {total / packed:.0f}): "
                "refused as a possible zip bomb"
            )
        try:
            info = zf.getinfo("word/document.xml")
        except KeyError:
            raise ExtractError("not a Word document (no word/document.xml inside the DOCX)") from None
        # Read with a hard cap even though the header claimed a size: headers can lie.
        try:
            with zf.open(info) as fh:
                xml = fh.read(DOCX_MAX_UNCOMPRESSED + 1)
        except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError, ValueError,
                OSError) as exc:  # a damaged member (bad header, CRC, deflate stream, method, password)
            raise ExtractError(f"damaged DOCX ({type(exc).__name__}: {exc}): re-save the document") from None
        if len(xml) > DOCX_MAX_UNCOMPRESSED:
            raise ExtractError("DOCX body inflates past the limit: refused as a possible zip bomb")
    try:
        root = DET.fromstring(xml)
    except Exception as exc:  # defusedxml raises several types for hostile XML
        raise ExtractError(f"damaged or hostile DOCX XML ({type(exc).__name__}): re-save the document") from None
    ns = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"
    paragraphs = []
    for p in root.iter(f"{ns}p"):
        parts = [t.text or "" for t in p.iter(f"{ns}t")]
        style = p.find(f"{ns}pPr/{ns}pStyle")
        text = "".join(parts)
        if style is not None and (style.get(f"{ns}val") or "").lower().startswith(("heading", "titre", "title")):
            text = "# " + text
        paragraphs.append(text)
    return "\n".join(paragraphs), {"paragraphs": len(paragraphs)}


def extract(fmt: str, data: bytes) -> tuple[str | None, dict]:
    """Text and metadata for a document or telemetry file; (None, {}) for other kinds."""
    if fmt == "pdf":
        return pdf_text(data)
    if fmt == "docx":
        return docx_text(data)
    if fmt in ("txt", "md"):
        text = decode_text(data)
        return text[:MAX_TEXT_CHARS], {}
    if fmt == "html":
        return html_to_text(decode_text(data))[:MAX_TEXT_CHARS], {}
    if fmt == "csv":
        text = decode_text(data)
        lines = text.splitlines()
        header = lines[0].split(",") if lines else []
        return None, {"rows": max(0, len(lines) - 1), "columns": [h.strip() for h in header][:200]}
    if fmt == "jsonl":
        return None, {"rows": sum(1 for line in data.splitlines() if line.strip())}
    return None, {}
