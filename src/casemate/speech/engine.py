"""The speech-to-text engine behind one small interface, and its faster-whisper implementation.

The engine sees speech only (voice-activity detection has removed the silence upstream) as 16 kHz
mono float32, and returns segments timed relative to that input; the caller maps them back to the
recording's clock.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from casemate.errors import ModelMissing


@dataclass(frozen=True)
class Word:
    start: float
    end: float
    word: str
    probability: float


@dataclass(frozen=True)
class Segment:
    start: float
    end: float
    text: str
    words: tuple[Word, ...] = ()
    avg_logprob: float = 0.0
    no_speech_prob: float = 0.0


@dataclass(frozen=True)
class EngineResult:
    segments: list[Segment]
    language: str
    language_probability: float


@dataclass(frozen=True)
class EngineSettings:
    """Decoding settings; defaults chosen by benchmarks/bench_speech.py on the 2-core VM."""

    compute_type: str = "int8"
    cpu_threads: int = 1
    beam_size: int = 5
    word_timestamps: bool = True
    # Auto-detection chooses among these (the languages a deployment expects); empty: any of Whisper's.
    languages: tuple[str, ...] = ("fr", "en")


class Transcriber(Protocol):
    """What a deployment swaps: speech in, timed text out."""

    name: str

    def transcribe(self, speech: np.ndarray, *, language: str | None) -> EngineResult: ...


class FasterWhisperTranscriber:
    """Whisper through CTranslate2 (int8 on CPU)."""

    def __init__(
        self, model_dir: Path, *, name: str = "whisper", settings: EngineSettings | None = None
    ) -> None:
        from faster_whisper import WhisperModel

        self.name = name
        self.settings = settings or EngineSettings()
        threads = self.settings.cpu_threads or int(os.environ.get("OMP_NUM_THREADS", "1") or 1)
        try:
            self._model = WhisperModel(
                str(model_dir),
                device="cpu",
                compute_type=self.settings.compute_type,
                cpu_threads=threads,
                num_workers=1,
                local_files_only=True,  # never reach for the Hugging Face hub
            )
        except (RuntimeError, ValueError, OSError) as exc:
            raise ModelMissing(f"cannot load the Whisper model in {model_dir}: {exc}") from exc
        self._lock = threading.Lock()  # one CTranslate2 model, one decode at a time

    def _detect(self, speech: np.ndarray) -> tuple[str | None, float]:
        """The most likely of the expected languages on the first 30 s of speech, and its probability
        among them (unrestricted detection mistakes robotic or noisy French for other languages)."""
        allowed = self.settings.languages
        if not allowed:
            return None, 0.0
        _, _, probs = self._model.detect_language(audio=speech, language_detection_threshold=0.0)
        table = {lang: p for lang, p in probs if lang in allowed}
        if not table:
            return None, 0.0
        best = max(table, key=lambda k: table[k])
        total = sum(table.values())
        return best, (table[best] / total if total > 0 else 0.0)

    def transcribe(self, speech: np.ndarray, *, language: str | None) -> EngineResult:
        s = self.settings
        with self._lock:
            detected, probability = (None, 0.0) if language else self._detect(speech)
            language = language or detected
            segments, info = self._model.transcribe(
                speech,
                language=language,
                beam_size=s.beam_size,
                word_timestamps=s.word_timestamps,
                vad_filter=False,  # done upstream, once, on the whole window
            )
            out = [
                Segment(
                    start=float(seg.start),
                    end=float(seg.end),
                    text=seg.text.strip(),
                    words=tuple(
                        Word(float(w.start), float(w.end), w.word.strip(), float(w.probability))
                        for w in (seg.words or ())
                    ),
                    avg_logprob=float(seg.avg_logprob),
                    no_speech_prob=float(seg.no_speech_prob),
                )
                for seg in segments  # a generator: decoding happens here
            ]
        return EngineResult(out, info.language, probability if detected else float(info.language_probability))
