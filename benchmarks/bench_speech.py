"""Speech benchmark: real-time factor and word error rate on speech whose exact text is known.

Recordings are made here with espeak-ng (voices en, fr), separated by pauses and mixed with pink
noise by sox. Real-time factor = audio seconds / wall seconds (higher is faster), median of --reps
runs, for Casemate's settings beside faster-whisper's own defaults on the same file in the same run.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_speech.py [--reps 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

EN = [
    "The convoy left the northern base at dawn and reached the river crossing two hours later.",
    "Radio contact was lost near the bridge shortly after the second patrol arrived.",
    "The engineers reported that the road to the airfield is open to light vehicles only.",
    "Fuel and water for three days were delivered to the forward position this morning.",
    "The weather forecast announces strong winds and heavy rain over the coast tonight.",
    "Two helicopters will carry the medical team to the village before noon.",
    "The commander asked for a full report on the damaged equipment by Friday.",
    "A small boat was seen moving along the shore without lights at midnight.",
]
FR = [
    "Le convoi a quitté la base nord à l'aube et a atteint le pont deux heures plus tard.",
    "Le contact radio a été perdu près de la rivière après l'arrivée de la seconde patrouille.",
    "Les sapeurs signalent que la route de l'aérodrome est ouverte aux véhicules légers.",
    "Le carburant et l'eau pour trois jours ont été livrés au poste avancé ce matin.",
    "La météo annonce des vents forts et de fortes pluies sur la côte cette nuit.",
    "Deux hélicoptères transporteront l'équipe médicale jusqu'au village avant midi.",
    "Le commandant demande un rapport complet sur le matériel endommagé avant vendredi.",
    "Un petit bateau a été aperçu le long du rivage sans feux à minuit.",
]


def sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True)


def duration(path: Path) -> float:
    return float(subprocess.run(["soxi", "-D", str(path)], capture_output=True, text=True, check=True).stdout)


def make_recording(sentences: list[str], voice: str, out: Path, noise: float, seed: int) -> Path:
    """Sentences with 2-6 s pauses between them (and 3 s around), pink noise at `noise` volume."""
    rng = random.Random(seed)
    work = out.parent / (out.stem + "_parts")
    work.mkdir(exist_ok=True)
    parts = []
    for i, text in enumerate(sentences):
        raw = work / f"{i}.raw.wav"
        sh("espeak-ng", "-v", voice, "-s", "150", "-w", str(raw), text)
        wav = work / f"{i}.wav"
        sh("sox", str(raw), "-r", "16000", "-c", "1", "-b", "16", str(wav))
        gap = work / f"gap{i}.wav"
        sh(
            "sox",
            "-n",
            "-r",
            "16000",
            "-c",
            "1",
            "-b",
            "16",
            str(gap),
            "trim",
            "0",
            f"{rng.uniform(2, 6):.2f}",
        )
        parts += [gap, wav]
    tail = work / "tail.wav"
    sh("sox", "-n", "-r", "16000", "-c", "1", "-b", "16", str(tail), "trim", "0", "3")
    clean = work / "clean.wav"
    sh("sox", *map(str, parts + [tail]), str(clean))
    if noise <= 0:
        clean.replace(out)
        return out
    hiss = work / "noise.wav"
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
        f"{duration(clean):.3f}",
        "pinknoise",
        "vol",
        str(noise),
    )
    sh("sox", "-m", str(clean), str(hiss), str(out))
    return out


def run_casemate(
    path: Path, model_dir: Path, *, threads: int, beam: int, language: str | None
) -> tuple[float, str]:
    from casemate.speech.engine import EngineSettings, FasterWhisperTranscriber
    from casemate.speech.transcribe import transcribe_file

    key = (threads, beam)
    engine = _ENGINES.get(key)
    if engine is None:
        engine = FasterWhisperTranscriber(
            model_dir, name="whisper-base", settings=EngineSettings(cpu_threads=threads, beam_size=beam)
        )
        _ENGINES[key] = engine
    t0 = time.perf_counter()
    result = transcribe_file(path, engine, language=language)
    return time.perf_counter() - t0, result.text


_ENGINES: dict[Any, Any] = {}
_DEFAULT_MODEL: list[Any] = []


def run_fw_default(path: Path, model_dir: Path, language: str | None) -> tuple[float, str]:
    """faster-whisper as its README shows it: WhisperModel(path) and transcribe(file), all defaults."""
    from faster_whisper import WhisperModel

    if not _DEFAULT_MODEL:
        _DEFAULT_MODEL.append(WhisperModel(str(model_dir), device="cpu"))
    t0 = time.perf_counter()
    segments, _ = _DEFAULT_MODEL[0].transcribe(str(path), language=language)
    text = " ".join(s.text.strip() for s in segments)
    return time.perf_counter() - t0, text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--models-dir", type=Path, default=None, help="where to assemble whisper-base")
    args = parser.parse_args()

    from casemate.speech.model_store import resolve_model
    from casemate.speech.wer import word_errors

    tmp = Path(tempfile.mkdtemp(prefix="bench_speech_"))
    model = resolve_model(args.models_dir or tmp / "models").path
    files = {
        "en-clean": (make_recording(EN, "en", tmp / "en_clean.wav", 0.0, 1), EN, "en"),
        "en-noisy": (make_recording(EN, "en", tmp / "en_noisy.wav", 0.04, 2), EN, "en"),
        "fr-clean": (make_recording(FR, "fr", tmp / "fr_clean.wav", 0.0, 3), FR, "fr"),
        "fr-noisy": (make_recording(FR, "fr", tmp / "fr_noisy.wav", 0.04, 4), FR, "fr"),
    }
    report: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.node()} {platform.machine()}, {os.cpu_count()} cores (shared)",
        "rtf": {},
        "wer": {},
    }

    # Real-time factor on English with pauses: medians of interleaved runs (same load for each).
    rtf_file, _, _ = files["en-clean"]
    audio_s = duration(rtf_file)
    configs = {
        "casemate (int8, VAD, 1 thread, beam 5, words)": lambda: run_casemate(
            rtf_file, model, threads=1, beam=5, language=None
        ),
        "casemate, 2 threads": lambda: run_casemate(rtf_file, model, threads=2, beam=5, language=None),
        "casemate, beam 1": lambda: run_casemate(rtf_file, model, threads=1, beam=1, language=None),
        "faster-whisper defaults (no VAD, compute default, threads default)": lambda: run_fw_default(
            rtf_file, model, None
        ),
    }
    times: dict[str, list[float]] = {name: [] for name in configs}
    for fn in configs.values():  # warm-up: model load and first-call costs out of the timings
        fn()
    for _ in range(args.reps):
        for name, fn in configs.items():
            times[name].append(fn()[0])
    for name, ts in times.items():
        med = statistics.median(ts)
        report["rtf"][name] = {
            "audio_s": round(audio_s, 1),
            "median_s": round(med, 2),
            "rtf": round(audio_s / med, 2),
        }
        print(f"RTF {name}: {audio_s:.1f} s audio in {med:.2f} s -> {audio_s / med:.2f}x real time")

    # Word error rate: Casemate (language detected, or given; beam 5 or 1) and faster-whisper defaults.
    for key, (path, sentences, lang) in files.items():
        ref = " ".join(sentences)
        runs = {
            "casemate": run_casemate(path, model, threads=1, beam=5, language=None)[1],
            "casemate_language_given": run_casemate(path, model, threads=1, beam=5, language=lang)[1],
            "casemate_beam1": run_casemate(path, model, threads=1, beam=1, language=None)[1],
            "faster_whisper_defaults": run_fw_default(path, model, None)[1],
        }
        row: dict[str, Any] = {"audio_s": round(duration(path), 1), "reference_words": len(ref.split())}
        for name, text in runs.items():
            row[name] = round(word_errors(ref, text, lang).wer, 3)
        row["casemate_text"] = runs["casemate"]
        report["wer"][key] = row
        print(f"WER {key}: " + ", ".join(f"{n} {row[n]:.1%}" for n in runs))
    if args.json:
        args.json.write_text(json.dumps(report, ensure_ascii=False, indent=2))


if __name__ == "__main__":
    main()
