"""Subtitles: SRT and WebVTT from transcript segments."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def timestamp(seconds: float, sep: str = ",") -> str:
    """`HH:MM:SS,mmm` (SRT) or `HH:MM:SS.mmm` (WebVTT, sep=".")."""
    ms = max(0, int(round(seconds * 1000)))
    h, rem = divmod(ms, 3_600_000)
    m, rem = divmod(rem, 60_000)
    s, ms = divmod(rem, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def _cues(segments: Iterable[Any]) -> list[tuple[float, float, str]]:
    out = []
    for seg in segments:
        start, end, text = (
            (seg["start"], seg["end"], seg["text"])
            if isinstance(seg, dict)
            else (seg.start, seg.end, seg.text)
        )
        # A cue line may not be empty nor contain the "-->" arrow or a blank line.
        text = " ".join(str(text).replace("-->", "->").split())
        if text:
            out.append((float(start), max(float(end), float(start)), text))
    return out


def to_srt(segments: Iterable[Any]) -> str:
    lines = []
    for i, (start, end, text) in enumerate(_cues(segments), 1):
        lines += [str(i), f"{timestamp(start)} --> {timestamp(end)}", text, ""]
    return "\n".join(lines)


def to_vtt(segments: Iterable[Any]) -> str:
    lines = ["WEBVTT", ""]
    for start, end, text in _cues(segments):
        lines += [f"{timestamp(start, '.')} --> {timestamp(end, '.')}", text, ""]
    return "\n".join(lines)


