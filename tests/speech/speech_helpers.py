"""Speech test helpers: short speech made with espeak-ng and sox at test time."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

EN_TEXT = "The convoy left the northern base at dawn and reached the river crossing two hours later."
EN_TEXT_2 = "Radio contact was lost near the bridge."


def need_tools(*tools: str) -> None:
    for tool in tools:
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (run scripts/system-packages.sh)")


def speak(text: str, out: Path, voice: str = "en", rate: int = 16000) -> Path:
    """A WAV of `text` spoken by espeak-ng, resampled to `rate` with sox."""
    need_tools("espeak-ng", "sox")
    raw = out.with_suffix(".raw.wav")
    subprocess.run(["espeak-ng", "-v", voice, "-w", str(raw), text], check=True)
    subprocess.run(["sox", str(raw), "-r", str(rate), "-c", "1", str(out)], check=True)
    raw.unlink()
    return out


def silence(seconds: float, out: Path, rate: int = 16000) -> Path:
    need_tools("sox")
    subprocess.run(
        ["sox", "-n", "-r", str(rate), "-c", "1", "-b", "16", str(out), "trim", "0", str(seconds)], check=True
    )
    return out


def concat(parts: list[Path], out: Path) -> Path:
    need_tools("sox")
    subprocess.run(["sox", *map(str, parts), str(out)], check=True)
    return out
