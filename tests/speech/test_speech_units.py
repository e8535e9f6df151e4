"""Pieces without the model: subtitles, WER, the window cutter, bad audio files."""

from __future__ import annotations

import os
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest
from speech_helpers import concat, need_tools, silence, speak

from casemate.errors import UsageError
from casemate.fileutil import write_atomic
from casemate.speech.audio import SAMPLE_RATE, DecodeStats, _cut_point, iter_pcm, probe, speech_windows
from casemate.speech.formats import timestamp, to_srt, to_vtt
from casemate.speech.wer import normalise, wer, word_errors


def test_timestamps_and_subtitles() -> None:
    assert timestamp(3725.5) == "01:02:05,500"
    assert timestamp(0.0004, ".") == "00:00:00.000"
    segs = [{"start": 1.0, "end": 2.25, "text": " Hello --> there \n"}, {"start": 3, "end": 4, "text": "  "}]
    srt = to_srt(segs)
    assert srt.splitlines()[:3] == ["1", "00:00:01,000 --> 00:00:02,250", "Hello -> there"]
    assert "00:00:03" not in srt  # empty cue dropped
    vtt = to_vtt(segs)
    assert vtt.startswith("WEBVTT\n\n00:00:01.000 --> 00:00:02.250\nHello -> there\n")


def test_write_atomic_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "a.srt"
    write_atomic(target, "x")
    assert target.read_text() == "x" and os.listdir(target.parent) == ["a.srt"]


def test_wer() -> None:
    assert wer("The cat sat.", "the cat sat") == 0.0
    assert wer("the cat sat on the mat", "the cat sat on mat") == pytest.approx(1 / 6)
    assert wer("a b c", "x b c d") == pytest.approx(2 / 3)
    assert word_errors("", "").wer == 0.0 and word_errors("", "noise").wer == 1.0
    assert normalise("À l'aube, 2 convois!", "fr") == ["à", "l", "aube", "deux", "convois"]


def test_cut_point_prefers_last_silence() -> None:
    chunks = [{"start": 0, "end": 100}, {"start": 300, "end": 500}]
    assert _cut_point(chunks, 1000) == 750  # the silence after the last speech
    assert _cut_point([{"start": 0, "end": 400}, {"start": 600, "end": 1000}], 1000) == 500
    assert _cut_point([{"start": 0, "end": 1000}], 1000) == 1000  # no pause: hard cut
    assert _cut_point([], 1000) == 1000


def test_windows_cover_the_recording_and_never_cut_speech(tmp_path: Path) -> None:
    need_tools("espeak-ng", "sox")
    phrase = speak("Alpha bravo charlie delta echo foxtrot.", tmp_path / "p.wav")
    gap = silence(3.0, tmp_path / "gap.wav")
    long = concat([phrase, gap, phrase, gap, phrase, gap, phrase], tmp_path / "long.wav")
    total = probe(long).declared_duration
    windows = list(speech_windows(iter_pcm(long, block_s=2.0), window_s=6.0))
    assert len(windows) >= 3  # it streamed in several windows
    assert sum(w.duration for w in windows) == pytest.approx(total, abs=0.01)
    offsets = [w.offset for w in windows]
    assert offsets == sorted(offsets)
    regions = [r for w in windows for r in w.regions()]
    assert len(regions) == 4  # each phrase once, whole: no cut went through speech
    for (_, e1), (s2, _) in zip(regions, regions[1:], strict=False):
        assert e1 < s2
    for w in windows:
        assert w.speech.dtype == np.float32
        assert w.speech.shape[0] == sum(c["end"] - c["start"] for c in w.chunks)


def test_iter_pcm_blocks_are_bounded(en_wav: Path) -> None:
    stats = DecodeStats()
    blocks = list(iter_pcm(en_wav, stats, block_s=1.0))
    assert all(b.shape[0] == SAMPLE_RATE for b in blocks[:-1])
    assert stats.decoded_s == pytest.approx(probe(en_wav).declared_duration, abs=0.05)


def _wav_header(channels: int, rate: int, data_size: int) -> bytes:
    fmt = struct.pack("<HHIIHH", 1, channels, rate, rate * 2 * channels, 2 * channels, 16)
    return (
        b"RIFF"
        + struct.pack("<I", 0xFFFFFFF0)
        + b"WAVE"
        + b"fmt "
        + struct.pack("<I", 16)
        + fmt
        + b"data"
        + struct.pack("<I", data_size)
    )


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.wav", b"", "empty file"),
        ("notes.wav", b"These are meeting notes, not a recording.\n" * 20, "not a readable audio"),
        ("random.mp3", os.urandom(40_000), "not a readable audio"),
        (
            "hugehdr.wav",
            b"RIFF" + struct.pack("<I", 0xFFFFFFF0) + b"WAVELIST" + struct.pack("<I", 0x7FFFFFF0) + b"x" * 64,
            "not a readable",
        ),
        ("channels.wav", _wav_header(1000, 16000, 0xFFFFFFFF) + b"\0" * 4000, "channel"),
        ("rate.wav", _wav_header(1, 0, 0xFFFFFFFF) + b"\0" * 4000, ""),
    ],
)
def test_bad_files_are_clear_errors(tmp_path: Path, name: str, content: bytes, message: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(UsageError) as err:
        probe(path)
        list(iter_pcm(path))  # if the header passed, decoding must fail cleanly
        raise UsageError("accepted")  # pragma: no cover - makes the test fail with a message
    assert str(path) in err.value.message and message in err.value.message
    assert "accepted" not in err.value.message


def test_video_without_sound(tmp_path: Path) -> None:
    need_tools("ffmpeg")
    video = tmp_path / "mute.mp4"
    subprocess.run(
        [
            "ffmpeg",
            "-loglevel",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=32x32:rate=5",
            "-t",
            "1",
            "-c:v",
            "mpeg4",
            str(video),
        ],
        check=True,
    )
    with pytest.raises(UsageError, match="without an audio track"):
        probe(video)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no such file"):
        probe(tmp_path / "nope.wav")


@pytest.mark.parametrize("suffix", [".mp3", ".ogg", ".flac", ".mp4"])
def test_formats_decode_to_the_same_length(tmp_path: Path, en_wav: Path, suffix: str) -> None:
    need_tools("ffmpeg")
    out = tmp_path / f"en{suffix}"
    if suffix == ".mp4":  # the audio track of a video
        cmd = [
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=32x32:rate=5",
            "-i",
            str(en_wav),
            "-shortest",
            "-c:v",
            "mpeg4",
            "-c:a",
            "aac",
        ]
    else:
        cmd = ["-i", str(en_wav)]
    subprocess.run(["ffmpeg", "-loglevel", "error", *cmd, str(out)], check=True)
    info = probe(out)
    assert info.has_video == (suffix == ".mp4")
    stats = DecodeStats()
    decoded = sum(b.shape[0] for b in iter_pcm(out, stats)) / SAMPLE_RATE
    assert decoded == pytest.approx(probe(en_wav).declared_duration, abs=0.15)
    assert stats.skipped_packets == 0
