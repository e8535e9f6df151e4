"""Audio in: probing, validation and a streaming decode cut into speech windows.

A two-hour recording is never one array. PyAV decodes and resamples to 16 kHz mono in blocks; blocks
gather into a window of a few minutes; voice-activity detection (Silero, ONNX, shipped with
faster-whisper) finds the speech in it; the window is cut in the last silence so no word is split,
and what follows the cut is carried into the next window. Memory stays at a few windows' worth
whatever the length of the file.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from casemate.errors import UsageError

SAMPLE_RATE = 16000
BLOCK_S = 30.0
WINDOW_S = 240.0
# A header may claim anything; these bound what we accept before decoding a sample.
MAX_CHANNELS = 64
MAX_SAMPLE_RATE = 768_000

AUDIO_SUFFIXES = {".wav", ".flac", ".mp3", ".ogg", ".oga", ".opus", ".m4a", ".aac", ".wma", ".aif", ".aiff"}
VIDEO_SUFFIXES = {".mp4", ".mkv", ".mov", ".avi", ".webm", ".m4v", ".mpg", ".mpeg", ".ts", ".wmv", ".flv"}


@dataclass(frozen=True)
class AudioInfo:
    """What the container says about the file, before decoding."""

    path: str
    format: str
    codec: str
    sample_rate: int
    channels: int
    declared_duration: float | None  # seconds, from the header; may be wrong (truncated files)
    has_video: bool


@dataclass
class DecodeStats:
    """Filled while decoding: what was actually read, and what went wrong on the way."""

    decoded_s: float = 0.0
    skipped_packets: int = 0
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class SpeechWindow:
    """A stretch of the recording: its speech only (concatenated), and where that speech was."""

    offset: float  # start of the window in the recording, seconds
    duration: float  # length of the window, seconds
    speech: np.ndarray  # 16 kHz mono float32, speech regions back to back
    chunks: list[dict[str, int]]  # speech regions in samples relative to the window (Silero format)

    def regions(self) -> list[tuple[float, float]]:
        """Speech regions in seconds from the start of the recording."""
        return [
            (round(self.offset + c["start"] / SAMPLE_RATE, 3), round(self.offset + c["end"] / SAMPLE_RATE, 3))
            for c in self.chunks
        ]


def _av():  # imported late: `casemate ls` must not pay for FFmpeg
    import av

    return av


def probe(path: str | os.PathLike[str]) -> AudioInfo:
    """Open the file's container and check it has a usable audio track; UsageError otherwise."""
    p = Path(path)
    if not p.exists():
        raise UsageError(f"{p}: no such file")
    if not p.is_file():
        raise UsageError(f"{p}: not a file")
    if p.stat().st_size == 0:
        raise UsageError(f"{p}: empty file (0 bytes), nothing to transcribe")
    av = _av()
    try:
        with av.open(str(p), mode="r", metadata_errors="ignore") as container:
            if not container.streams.audio:
                kind = "a video without an audio track" if container.streams.video else "not audio"
                raise UsageError(f"{p}: {kind}; give a WAV, FLAC, MP3, OGG file or a video with sound")
            stream = container.streams.audio[0]
            ctx = stream.codec_context
            if ctx is None:  # FFmpeg found a track but no decoder for it (a damaged header)
                raise UsageError(f"{p}: the audio track's codec is unknown or damaged; the file is damaged")
            rate = int(ctx.sample_rate or 0)
            channels = int(getattr(ctx, "channels", 0) or 0)
            declared = None
            if stream.duration is not None and stream.time_base is not None:
                declared = float(stream.duration * stream.time_base)
            elif container.duration is not None:
                declared = container.duration / 1_000_000
            info = AudioInfo(
                path=str(p),
                format=container.format.name,
                codec=ctx.name,
                sample_rate=rate,
                channels=channels,
                declared_duration=declared,
                has_video=bool(container.streams.video),
            )
    except UsageError:
        raise
    except (av.FFmpegError, ValueError, OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{p}: not a readable audio or video file ({_reason(exc)})") from exc
    if not 0 < info.sample_rate <= MAX_SAMPLE_RATE:
        raise UsageError(
            f"{p}: implausible sample rate {info.sample_rate} Hz in the header; the file is damaged"
        )
    if info.channels == 0:
        raise UsageError(f"{p}: the header declares no usable audio channel; the file is damaged")
    if info.channels > MAX_CHANNELS:
        raise UsageError(f"{p}: implausible channel count {info.channels} in the header; the file is damaged")
    return info


def _reason(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    # FFmpeg messages end with the path; keep the cause only.
    return text.split(": '")[0][:200]


def iter_pcm(
    path: str | os.PathLike[str], stats: DecodeStats | None = None, *, block_s: float = BLOCK_S
) -> Iterator[np.ndarray]:
    """Decode the first audio track to 16 kHz mono float32, `block_s` seconds at a time.

    Packets FFmpeg cannot decode are skipped and counted (as faster-whisper does); an error that
    stops the demuxer raises UsageError unless some audio was already decoded, in which case the
    stream ends there with a warning (a truncated recording keeps what it has).
    """
    stats = stats if stats is not None else DecodeStats()
    av = _av()
    block = int(block_s * SAMPLE_RATE)
    pending: list[np.ndarray] = []
    pending_len = 0
    total = 0
    try:
        container = av.open(str(path), mode="r", metadata_errors="ignore")
    except (av.FFmpegError, ValueError, OSError) as exc:
        raise UsageError(f"{path}: not a readable audio or video file ({_reason(exc)})") from exc
    with container:
        stream = container.streams.audio[0]
        resampler = av.audio.resampler.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)

        def frames() -> Iterator[object]:
            packets = container.demux(stream)
            while True:
                try:
                    packet = next(packets)
                except StopIteration:
                    break
                except av.FFmpegError as exc:
                    if total + pending_len == 0:
                        raise UsageError(f"{path}: cannot read the audio ({_reason(exc)})") from exc
                    stats.warnings.append(
                        f"reading stopped at {(total + pending_len) / SAMPLE_RATE:.1f} s: {_reason(exc)}"
                    )
                    break
                try:
                    yield from packet.decode()
                except (av.InvalidDataError, av.FFmpegError):
                    stats.skipped_packets += 1
            yield None  # flushes the resampler

        for frame in frames():
            if frame is not None:
                frame.pts = None  # PyAV checks timestamps; broken files have broken ones
            try:
                outs = resampler.resample(frame)
            except (av.FFmpegError, ValueError) as exc:  # a header FFmpeg cannot convert (fuzzing found it)
                raise UsageError(f"{path}: cannot convert the audio ({_reason(exc)}); the file is damaged") from exc
            for out in outs:
                arr = out.to_ndarray().reshape(-1).astype(np.float32, copy=False)
                pending.append(arr)
                pending_len += arr.shape[0]
                while pending_len >= block:
                    joined = np.concatenate(pending)
                    total += block
                    yield joined[:block]
                    rest = joined[block:]
                    pending = [rest] if rest.size else []
                    pending_len = rest.shape[0]
        if pending_len:
            total += pending_len
            yield np.concatenate(pending)
    stats.decoded_s = total / SAMPLE_RATE
    if stats.skipped_packets:
        stats.warnings.append(f"{stats.skipped_packets} damaged packet(s) skipped while decoding")


def default_vad_options() -> object:
    from faster_whisper.vad import VadOptions

    # 1 s of silence ends a region (faster-whisper uses 2 s): finer regions, more places to cut.
    return VadOptions(min_silence_duration_ms=1000, speech_pad_ms=400)


def _cut_point(chunks: list[dict[str, int]], length: int) -> int:
    """Where to end a full window: in the middle of its last silence, so no word is split."""
    if not chunks:
        return length
    gaps = [(chunks[i]["end"], chunks[i + 1]["start"]) for i in range(len(chunks) - 1)]
    if chunks[-1]["end"] < length:
        gaps.append((chunks[-1]["end"], length))
    if not gaps:
        return length  # speech without a pause for a whole window: a hard cut is the only option
    start, end = gaps[-1]
    return (start + end) // 2


def speech_windows(
    blocks: Iterable[np.ndarray], *, window_s: float = WINDOW_S, vad_options: object | None = None
) -> Iterator[SpeechWindow]:
    """Gather PCM blocks into windows of about `window_s` and keep only their speech."""
    from faster_whisper.vad import collect_chunks, get_speech_timestamps

    from casemate.ops.verify import verify_pinned

    verify_pinned("silero-vad-v6")  # the VAD's ONNX file, before ONNX Runtime reads it

    options = vad_options if vad_options is not None else default_vad_options()
    limit = int(window_s * SAMPLE_RATE)
    buffer: list[np.ndarray] = []
    buffered = 0
    offset = 0  # samples from the start of the recording to the buffer's start

    def window(audio: np.ndarray, chunks: list[dict[str, int]]) -> SpeechWindow:
        if chunks:
            parts, _ = collect_chunks(audio, chunks, sampling_rate=SAMPLE_RATE)
            speech = np.concatenate(parts)
        else:
            speech = np.zeros(0, dtype=np.float32)
        return SpeechWindow(offset / SAMPLE_RATE, audio.shape[0] / SAMPLE_RATE, speech, chunks)

    for block in blocks:
        buffer.append(block)
        buffered += block.shape[0]
        if buffered < limit:
            continue
        audio = np.concatenate(buffer)
        chunks = get_speech_timestamps(audio, options, sampling_rate=SAMPLE_RATE)
        cut = _cut_point(chunks, audio.shape[0])
        kept = [c for c in chunks if c["end"] <= cut]
        yield window(audio[:cut], kept)
        offset += cut
        rest = audio[cut:].copy()
        buffer = [rest] if rest.size else []
        buffered = rest.shape[0]
    if buffered:
        audio = np.concatenate(buffer)
        chunks = get_speech_timestamps(audio, options, sampling_rate=SAMPLE_RATE)
        yield window(audio, chunks)
