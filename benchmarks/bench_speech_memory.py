"""Peak memory on a long recording: Casemate streams, so a two-hour file costs a few windows.

Builds a two-hour WAV (a spoken sentence every five minutes over faint pink noise), then, each in a
fresh process, measures peak RSS for: loading the model only; Casemate transcribing the whole file;
faster-whisper's `decode_audio` (which holds the whole recording as one array) for comparison.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_speech_memory.py [--hours 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = r"""
import json, resource, sys, time
from pathlib import Path
mode, model, audio = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
t0 = time.perf_counter(); extra = {}
if mode in ("model", "casemate"):
    from casemate.speech.engine import FasterWhisperTranscriber
    engine = FasterWhisperTranscriber(model, name="whisper-base")
if mode == "casemate":
    from casemate.speech.transcribe import transcribe_file
    r = transcribe_file(audio, engine)
    extra = {"segments": len(r.segments), "speech_s": round(r.speech_duration, 1), "audio_s": round(r.duration, 1),
             "text_head": r.text[:80]}
if mode == "decode_audio":
    from faster_whisper.audio import decode_audio
    a = decode_audio(audio); extra = {"samples": int(a.shape[0])}
print(json.dumps({"mode": mode, "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                  "wall_s": round(time.perf_counter() - t0, 1), **extra}))
"""


def sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True)


def build(hours: float, folder: Path) -> Path:
    phrase = folder / "phrase.wav"
    sh(
        "espeak-ng",
        "-v",
        "en",
        "-w",
        str(folder / "raw.wav"),
        "Checkpoint report: the patrol is at the bridge and all is quiet.",
    )
    sh("sox", str(folder / "raw.wav"), "-r", "16000", "-c", "1", "-b", "16", str(phrase))
    hiss = folder / "hiss.wav"
    sh(
        "sox",
        "-n",
        "-r",
        "16000",
        "-c",
        "1",
        "-b",
        "16",
        str(hiss),
        "synth",
        "295",
        "pinknoise",
        "vol",
        "0.005",
    )
    unit = folder / "unit.wav"
    sh("sox", str(phrase), str(hiss), str(unit))
    units = max(1, round(hours * 3600 / 300))
    out = folder / "long.wav"
    sh("sox", *[str(unit)] * units, str(out))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hours", type=float, default=2.0)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--models-dir", type=Path, default=None)
    args = parser.parse_args()
    from casemate.speech.model_store import resolve_model

    tmp = Path(tempfile.mkdtemp(prefix="bench_speech_mem_"))
    model = resolve_model(args.models_dir or tmp / "models").path
    audio = build(args.hours, tmp)
    results = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "file_mib": round(audio.stat().st_size / 2**20, 1),
        "hours": args.hours,
        "runs": [],
    }
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for mode in ("model", "casemate", "decode_audio"):
        out = subprocess.run(
            [sys.executable, "-c", CHILD, mode, str(model), str(audio)],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        )
        row = json.loads(out.stdout.strip().splitlines()[-1])
        results["runs"].append(row)
        print(row)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    audio.unlink()


if __name__ == "__main__":
    main()
