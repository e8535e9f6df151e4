"""The Johnson criteria, in one place for every capability that grades D/R/I.

Levels: D (detected: a vehicle is there), R (recognised: it is a truck), I (identified: a tanker).
Johnson (1958): about 1 cycle across the target's critical (smaller) dimension to detect, 4 to
recognise, 6.4 to identify, at 2 pixels a cycle.
"""

from __future__ import annotations

LEVELS: tuple[str, ...] = ("D", "R", "I")
CYCLES: dict[str, float] = {"D": 1.0, "R": 4.0, "I": 6.4}
PIXELS_PER_CYCLE = 2.0
# Pixels across the critical dimension needed for each level: D 2, R 8, I 12.8.
JOHNSON_PX: dict[str, float] = {level: c * PIXELS_PER_CYCLE for level, c in CYCLES.items()}


def level_index(level: str) -> int:
    return LEVELS.index(level)


def ceiling(pixels_on_target: float, johnson_px: dict[str, float] | None = None) -> str | None:
    """The highest level the resolution permits, or None below detection."""
    table = johnson_px or JOHNSON_PX
    best = None
    for level in LEVELS:
        if pixels_on_target >= table[level]:
            best = level
    return best
