"""The service: audio (a catalog version or a file) in, a transcript version out.

A transcript is stored only once the whole recording has been transcribed, so a failure leaves the
catalog as it was. It is derived from the audio (parents = [audio id]), so its label is at least the
audio's, and the assistant indexes `text` and `metadata["segments"]` (start, end, text) as a
document whose anchors are time ranges.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from casemate.catalog.models import Version
from casemate.config import SpeechConfig
from casemate.errors import NotFound, UsageError
from casemate.security import User
from casemate.speech.audio import (
    SAMPLE_RATE,
    VIDEO_SUFFIXES,
    WINDOW_S,
    DecodeStats,
    iter_pcm,
    probe,
    speech_windows,
)
from casemate.speech.engine import (
    EngineSettings,
    FasterWhisperTranscriber,
    Segment,
    Transcriber,
    Word,
)
from casemate.speech.model_store import resolve_model
from casemate.workspace import Workspace

LANGUAGES = ("auto", "fr", "en")
FORMAT_VERSION = 1


@dataclass
class Transcript:
    """What came out of one recording."""

    language: str | None
    language_probability: float
    duration: float  # seconds of audio decoded
    speech_duration: float  # seconds voice-activity detection kept
    segments: list[Segment]
    vad: list[tuple[float, float]]
    model: str
    warnings: list[str] = field(default_factory=list)
    empty_reason: str | None = None

    @property
    def text(self) -> str:
        return "\n".join(s.text for s in self.segments if s.text)

    def to_metadata(self) -> dict[str, Any]:
        """The catalog metadata; `segments` (start, end, text) is what the assistant's index reads."""
        meta: dict[str, Any] = {
            "format_version": FORMAT_VERSION,
            "language": self.language,
            "language_probability": round(self.language_probability, 4),
            "duration": round(self.duration, 3),
            "speech_duration": round(self.speech_duration, 3),
            "model": self.model,
            "segments": [
                {
                    "start": s.start,
                    "end": s.end,
                    "text": s.text,
                    "words": [asdict(w) for w in s.words],
                }
                for s in self.segments
            ],
            "vad": [{"start": a, "end": b} for a, b in self.vad],
            "warnings": list(self.warnings),
        }
        if self.empty_reason:
            meta["empty_reason"] = self.empty_reason
        return meta

    @classmethod
    def from_metadata(cls, meta: dict[str, Any]) -> Transcript:
        return cls(
            language=meta.get("language"),
            language_probability=float(meta.get("language_probability") or 0.0),
            duration=float(meta.get("duration") or 0.0),
            speech_duration=float(meta.get("speech_duration") or 0.0),
            segments=[
                Segment(
                    float(s["start"]),
                    float(s["end"]),
                    str(s["text"]),
                    tuple(Word(**w) for w in s.get("words", ())),
                )
                for s in meta.get("segments", ())
            ],
            vad=[(float(r["start"]), float(r["end"])) for r in meta.get("vad", ())],
            model=str(meta.get("model", "")),
            warnings=list(meta.get("warnings", ())),
            empty_reason=meta.get("empty_reason"),
        )


def _restore(seg: Segment, offset: float, ts_map: Any) -> Segment:
    """Map a segment timed on the speech-only audio back to the recording's clock."""
    words = []
    for w in seg.words:
        idx = ts_map.get_chunk_index((w.start + w.end) / 2)
        words.append(
            Word(
                round(offset + ts_map.get_original_time(w.start, idx), 3),
                round(offset + ts_map.get_original_time(w.end, idx), 3),
                w.word,
                round(w.probability, 4),
            )
        )
    if words:
        start, end = words[0].start, words[-1].end
    else:
        start = offset + ts_map.get_original_time(seg.start)
        end = offset + ts_map.get_original_time(seg.end, is_end=True)
    return Segment(
        round(start, 3), round(end, 3), seg.text, tuple(words), seg.avg_logprob, seg.no_speech_prob
    )


def transcribe_file(
    path: str | Path,
    engine: Transcriber,
    *,
    language: str | None = None,
    window_s: float = WINDOW_S,
    progress: Callable[[float], None] | None = None,
) -> Transcript:
    """Transcribe a recording, streaming it window by window. UsageError for unreadable input."""
    from faster_whisper.vad import SpeechTimestampsMap

    if language == "auto":
        language = None
    info = probe(path)
    stats = DecodeStats()
    segments: list[Segment] = []
    regions: list[tuple[float, float]] = []
    speech_s = 0.0
    detected: str | None = language
    probability = 1.0 if language else 0.0
    for window in speech_windows(iter_pcm(path, stats), window_s=window_s):
        if window.speech.size:
            regions.extend(window.regions())
            speech_s += window.speech.shape[0] / SAMPLE_RATE
            # Language is detected once, on the first window with speech, then held: a recording
            # flipping language mid-way is transcribed in the first one it spoke.
            result = engine.transcribe(window.speech, language=detected)
            if detected is None:
                detected, probability = result.language, result.language_probability
            ts_map = SpeechTimestampsMap(window.chunks, SAMPLE_RATE)
            segments.extend(_restore(s, window.offset, ts_map) for s in result.segments if s.text)
        if progress:
            progress(window.offset + window.duration)
    if stats.decoded_s == 0:
        raise UsageError(f"{path}: no audio could be decoded from the file (damaged or not audio)")
    warnings = list(stats.warnings)
    declared = info.declared_duration
    if declared and declared - stats.decoded_s > max(1.0, 0.02 * declared):
        warnings.append(
            f"the file ends after {stats.decoded_s:.1f} s of audio but its header declares {declared:.1f} s "
            "(truncated or damaged)"
        )
    empty_reason = None
    if not segments:
        if not regions:
            empty_reason = f"no speech detected in {stats.decoded_s:.1f} s of audio (silence or noise only)"
        else:
            empty_reason = f"{speech_s:.1f} s of voice activity, but no words were recognised"
    return Transcript(
        language=detected if segments or language else None,
        language_probability=probability if segments or language else 0.0,
        duration=stats.decoded_s,
        speech_duration=speech_s,
        segments=segments,
        vad=regions,
        model=getattr(engine, "name", "unknown"),
        warnings=warnings,
        empty_reason=empty_reason,
    )


# ---- engines, one per model and settings, shared by the CLI and the ingest hook in a process ----

_ENGINES: dict[tuple[str, EngineSettings], Transcriber] = {}
_ENGINES_LOCK = threading.Lock()


def settings_from_config(conf: SpeechConfig) -> EngineSettings:
    return EngineSettings(
        compute_type=conf.compute_type,
        cpu_threads=conf.cpu_threads,
        beam_size=conf.beam_size,
        languages=conf.detect_languages,
    )


def get_engine(ws: Workspace, model: str | None = None) -> Transcriber:
    """The engine for `model` (a folder), else config speech.model, else the default model."""
    conf = ws.config.speech
    ref = resolve_model(ws.models_dir, model or conf.model)
    settings = settings_from_config(conf)
    key = (str(ref.path), settings)
    with _ENGINES_LOCK:
        engine = _ENGINES.get(key)
        if engine is None:
            engine = FasterWhisperTranscriber(ref.path, name=ref.name, settings=settings)
            _ENGINES[key] = engine
    return engine


# ---- the catalog side ----


@dataclass
class TranscribeOutcome:
    audio: Version  # the recording
    transcript: Version
    result: Transcript
    reused: bool = False


def is_transcribable(version: Version) -> bool:
    return version.kind == "audio" or (
        version.kind == "other" and Path(version.name).suffix.lower() in VIDEO_SUFFIXES
    )


def find_transcript(ws: Workspace, user: User, audio_id: str, model: str, language: str | None) -> Version | None:
    """An existing transcript of this audio by this model and language setting, if readable."""
    found = None
    for v in ws.catalog.children(user, audio_id, kind="transcript"):
        meta = v.metadata or {}
        if (
            v.parents == (audio_id,)
            and meta.get("model") == model
            and meta.get("requested_language") == (language or "auto")
        ):
            found = v  # oldest first: keep the newest
    return found


def _store(
    ws: Workspace, user: User, audio: Version, result: Transcript, language: str | None, label: str | None
) -> Version:
    meta = result.to_metadata()
    meta["requested_language"] = language or "auto"
    meta["audio"] = {"id": audio.id, "name": audio.name}
    body = json.dumps({"audio": audio.id, **meta}, ensure_ascii=False).encode()
    return ws.catalog.put(
        user,
        body,
        name=f"{audio.name}.transcript.json",
        kind="transcript",
        label=label,  # None: the lub of the parents, i.e. the audio's label
        parents=[audio.id],
        metadata=meta,
        text=result.text,
    )


def _bind(
    progress: Callable[[float, float | None], None] | None, total: float | None
) -> Callable[[float], None] | None:
    return None if progress is None else (lambda done: progress(done, total))


def transcribe_source(
    ws: Workspace,
    user: User,
    source: str,
    *,
    language: str | None = None,
    model: str | None = None,
    label: str | None = None,
    force: bool = False,
    engine: Transcriber | None = None,
    progress: Callable[[float, float | None], None] | None = None,
) -> TranscribeOutcome:
    """Transcribe a catalog version id or a file path; store and return the transcript version.

    A path is transcribed first, then the recording (labelled `label`, which a path requires) and its
    transcript are put into the catalog: a file that fails stores nothing. For a version id, `label`
    optionally raises the transcript's label above the audio's. `progress(done_s, total_s)` is called
    after each window (total_s from the header, None when it does not say).
    """
    language = None if language in (None, "", "auto") else language
    if language is not None and language not in LANGUAGES:
        raise UsageError(f"unknown language {language!r}: use one of {', '.join(LANGUAGES)}")
    window_s = ws.config.speech.window_s
    path = Path(source).expanduser()
    if path.exists():
        if not label:
            raise UsageError(
                f"{source}: a file needs --label (its classification, e.g. --label DR) to be stored"
            )
        ws.catalog.check_label(user, label)  # refuse a bad label before the long part
        info = probe(path)
        engine = engine or get_engine(ws, model)
        total = info.declared_duration
        result = transcribe_file(
            path, engine, language=language, window_s=window_s, progress=_bind(progress, total)
        )
        audio = ws.catalog.put(
            user,
            path,
            name=path.name,
            kind="other" if info.has_video else "audio",
            label=label,
            metadata={"format": info.format, "codec": info.codec, "duration": round(result.duration, 3)},
            source_path=str(path.resolve()),
            source_key=str(path.resolve()),
        )
        if not force:  # the same recording given again: keep its transcript rather than a copy
            existing = find_transcript(ws, user, audio.id, engine.name, language)
            if existing is not None:
                return TranscribeOutcome(audio, existing, Transcript.from_metadata(existing.metadata), reused=True)
        return TranscribeOutcome(audio, _store(ws, user, audio, result, language, None), result)
    if "/" in source or path.suffix.lower() in {".wav", ".mp3", ".flac", ".ogg", ".mp4"}:
        raise UsageError(f"{source}: no such file")
    audio = ws.catalog.get(user, source)  # NotFound when absent or unreadable: the same to the user
    if not is_transcribable(audio):
        raise UsageError(f"{source} ({audio.name}) is a {audio.kind}, not a recording: nothing to transcribe")
    engine = engine or get_engine(ws, model)
    if not force:
        existing = find_transcript(ws, user, audio.id, engine.name, language)
        if existing is not None:
            return TranscribeOutcome(
                audio, existing, Transcript.from_metadata(existing.metadata), reused=True
            )
    blob = ws.catalog.blob_path(user, audio.id)
    total = probe(blob).declared_duration if progress else None
    result = transcribe_file(
        blob, engine, language=language, window_s=window_s, progress=_bind(progress, total)
    )
    return TranscribeOutcome(audio, _store(ws, user, audio, result, language, label), result)


__all__ = [
    "LANGUAGES",
    "NotFound",
    "TranscribeOutcome",
    "Transcript",
    "get_engine",
    "is_transcribable",
    "transcribe_file",
    "transcribe_source",
]
