"""The shipped e5 weights and the speech VAD are checked against their pinned SHA-256 before
their engines read them: a mismatch is a clear error naming the file, and nothing is loaded."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from casemate.errors import IntegrityError
from casemate.ops import verify


@pytest.fixture
def wrong_pin(monkeypatch: pytest.MonkeyPatch):
    def pin_wrong(model: str) -> None:
        changed = tuple(dataclasses.replace(p, sha256="0" * 64) if p.model == model else p
                        for p in verify.PINNED_MODELS)
        monkeypatch.setattr(verify, "PINNED_MODELS", changed)
        verify.forget_checked()

    yield pin_wrong
    verify.forget_checked()


def test_e5_weights_are_verified_before_loading(wrong_pin) -> None:
    from casemate.assistant.embedder import E5Embedder

    wrong_pin("multilingual-e5-small-q4")
    with pytest.raises(IntegrityError, match="e5-small-q4.bin"):
        E5Embedder()


def test_the_vad_model_is_verified_before_use(wrong_pin) -> None:
    from casemate.speech.audio import speech_windows

    wrong_pin("silero-vad-v6")
    with pytest.raises(IntegrityError, match="silero_vad_v6.onnx"):
        next(iter(speech_windows([np.zeros(16000, dtype=np.float32)])))
