"""Class hierarchy and the Johnson criteria: how much a detection may honestly claim.

Levels: D (detected: a vehicle is there), R (recognised: it is a truck), I (identified: a tanker).
The Johnson criteria bound the level by the pixels across the target's smaller side; a detection
never claims a level above that ceiling and abstains to the parent class instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from casemate.johnson import JOHNSON_PX, LEVELS, ceiling

__all__ = ["DEFAULT_CLASSES", "JOHNSON_PX", "LEVELS", "MIN_SCORE", "DriPolicy", "Grade", "Hierarchy", "grade"]

# Leaf classes of the default model as "category/class/type" paths (D/R/I).
DEFAULT_CLASSES: tuple[str, ...] = (
    "vehicle/car/sedan",
    "vehicle/truck/tanker",
    "vehicle/truck/box_truck",
    "ship/boat/motorboat",
    "ship/cargo/container_ship",
    "aircraft/airliner/narrowbody",
    "aircraft/fighter/delta_fighter",
)

# JOHNSON_PX (casemate.johnson): D 2, R 8, I 12.8 px across the smaller side; a manifest may carry
# calibrated values instead.
# Minimum score at a level for the model to claim it (below: abstain to the parent).
MIN_SCORE: dict[str, float] = {"D": 0.25, "R": 0.4, "I": 0.5}


@dataclass(frozen=True)
class DriPolicy:
    """Johnson thresholds (px) and per-level minimum scores; calibrated values may replace them."""

    johnson_px: dict[str, float] = field(default_factory=lambda: dict(JOHNSON_PX))
    min_score: dict[str, float] = field(default_factory=lambda: dict(MIN_SCORE))

    @classmethod
    def from_manifest(cls, manifest: dict) -> DriPolicy:
        dri = manifest.get("dri") or {}
        return cls(
            johnson_px={**JOHNSON_PX, **(dri.get("johnson_px") or {})},
            min_score={**MIN_SCORE, **(dri.get("min_score") or {})},
        )

    def ceiling(self, pixels_on_target: float) -> str | None:
        """The highest level the resolution permits, or None below detection."""
        return ceiling(pixels_on_target, self.johnson_px)


@dataclass(frozen=True)
class Hierarchy:
    """Leaf classes as paths; the scores of an inner node come from its leaves."""

    leaves: tuple[tuple[str, ...], ...]

    @classmethod
    def from_classes(cls, classes: list[str] | tuple[str, ...]) -> Hierarchy:
        paths = []
        for name in classes:
            parts = tuple(p for p in str(name).split("/") if p)
            if not parts or len(parts) > 3:
                raise ValueError(f"class {name!r}: expected 'category/class/type' (1 to 3 parts)")
            paths.append(parts)
        return cls(tuple(paths))

    def level_scores(self, leaf_scores: list[float], leaf: int) -> list[float]:
        """Score of each node on the path to `leaf` (noisy-or of the leaves under that node)."""
        path = self.leaves[leaf]
        out = []
        for depth in range(len(path)):
            prefix = path[: depth + 1]
            miss = 1.0
            for i, other in enumerate(self.leaves):
                if other[: depth + 1] == prefix:
                    miss *= 1.0 - float(leaf_scores[i])
            out.append(1.0 - miss)
        return out


@dataclass(frozen=True)
class Grade:
    """What a detection may claim."""

    dri_level: str | None
    ceiling: str | None
    class_path: list[dict]  # [{"level": "D", "name": "vehicle", "score": 0.9}, ...] up to dri_level
    label: str  # "truck, type unknown" when it abstains below identification


def grade(hierarchy: Hierarchy, policy: DriPolicy, leaf_scores: list[float], leaf: int,
          pixels_on_target: float) -> Grade:
    """Walk down the class path while both the resolution and the scores allow it."""
    ceiling = policy.ceiling(pixels_on_target)
    path = hierarchy.leaves[leaf]
    scores = hierarchy.level_scores(leaf_scores, leaf)
    claimed: list[dict] = []
    if ceiling is not None:
        top = LEVELS.index(ceiling)
        for depth, (name, score) in enumerate(zip(path, scores, strict=True)):
            level = LEVELS[depth]
            if depth > top or score < policy.min_score[level]:
                break
            claimed.append({"level": level, "name": name, "score": round(float(score), 4)})
    if not claimed:
        return Grade(None, ceiling, [], "")
    level = claimed[-1]["level"]
    name = claimed[-1]["name"]
    if len(claimed) < len(path):
        label = f"{name}, {'class' if level == 'D' else 'type'} unknown"
    else:
        label = name
    return Grade(level, ceiling, claimed, label)
