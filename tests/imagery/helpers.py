"""Shared helpers for imagery tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

# Two visually distinct classes keep the session's tiny training short and its result stable.
TINY_CLASSES = ("ship/cargo/container_ship", "aircraft/airliner/narrowbody")


def png_path(tmp: Path, seed: int = 3, size: int = 192) -> Path:
    """A synthetic scene as a PNG (no georeferencing)."""
    from casemate.imagery.synth import generate_scene, write_png

    scene = generate_scene(np.random.default_rng(seed), size=size, classes=TINY_CLASSES)
    p = tmp / f"scene{seed}.png"
    write_png(p, scene.image)
    return p


def real_data(*parts: str) -> Path:
    """A path under the shared real-data folder (../shared/data beside the checkout, or beside one
    of its parents for a worktree); skips the test, saying so, when it is absent."""
    import pytest

    here = Path(__file__).resolve()
    for base in here.parents[2:]:
        path = base.parent.joinpath("shared", "data", *parts)
        if path.exists():
            return path
    pytest.skip(f"real data absent: shared/data/{'/'.join(parts)} (the shared/ folder beside the checkout)")
    raise AssertionError  # unreachable: skip raises
