"""Fixtures for imagery tests: a tiny detector trained once per session on synthetic scenes."""

from __future__ import annotations

import time

import pytest

from imagery.helpers import TINY_CLASSES


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Train a tiny detector on synthetic scenes (bounded CPU time) and evaluate it held-out."""
    from casemate.imagery.evaluate import evaluate
    from casemate.imagery.model.train import train
    from casemate.imagery.synth import write_dataset

    root = tmp_path_factory.mktemp("tiny")
    write_dataset(root / "train", 96, seed=11, size=192, classes=TINY_CLASSES)
    write_dataset(root / "test", 16, seed=12, size=192, classes=TINY_CLASSES)
    t0 = time.process_time()
    train([root / "train"], root / "model", classes=TINY_CLASSES, width=8, epochs=40, max_minutes=None,
          batch=8, crop=192, lr=4e-3, seed=0, threads=1, tile=256, snapshot_every=240)
    cpu_s = time.process_time() - t0
    ev = evaluate(root / "model", root / "test")
    return {"dir": root / "model", "data": root, "eval": ev, "cpu_s": cpu_s}

