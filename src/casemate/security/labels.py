"""Classification labels: a level (NP < DR < S < TS) plus a set of need-to-know compartments.

Labels form a lattice: `a.dominates(b)` when a's level is at least b's and a's compartments
include b's; `lub` is the least upper bound (highest level, union of compartments).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum

from casemate.errors import UsageError


class Level(IntEnum):
    NP = 0  # Non Protégé
    DR = 1  # Diffusion Restreinte
    S = 2  # Secret
    TS = 3  # Très Secret


LEVEL_NAMES_FR = {
    Level.NP: "Non Protégé",
    Level.DR: "Diffusion Restreinte",
    Level.S: "Secret",
    Level.TS: "Très Secret",
}

LEVEL_NAMES_EN = {
    Level.NP: "Unclassified",
    Level.DR: "Restricted",
    Level.S: "Secret",
    Level.TS: "Top Secret",
}


def _fold(text: str) -> str:
    """Lower case, accents removed, runs of spaces, dashes and underscores made one space."""
    decomposed = unicodedata.normalize("NFKD", text)
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    return re.sub(r"[\s_\-]+", " ", plain.strip().lower())


_LEVEL_ALIASES: dict[str, Level] = {}
for _level in Level:
    for _alias in (_level.name, LEVEL_NAMES_FR[_level], LEVEL_NAMES_EN[_level]):
        _LEVEL_ALIASES[_fold(_alias)] = _level
_LEVEL_ALIASES.update(
    {
        "non protege": Level.NP,
        "unclassified": Level.NP,
        "official": Level.DR,
        "restricted": Level.DR,
        "tres secret": Level.TS,
        "top secret": Level.TS,
    }
)

COMPARTMENT_RE = re.compile(r"^[A-Z][A-Z0-9]{0,31}$")


@dataclass(frozen=True, slots=True, order=False)
class Label:
    level: Level
    compartments: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if not isinstance(self.level, Level):
            object.__setattr__(self, "level", Level(self.level))
        if not isinstance(self.compartments, frozenset):
            object.__setattr__(self, "compartments", frozenset(self.compartments))
        for comp in self.compartments:
            if not COMPARTMENT_RE.match(comp):
                raise UsageError(
                    f"bad compartment {comp!r}: use an upper-case word of letters and digits, such as ALPHA"
                )

    def dominates(self, other: Label) -> bool:
        return self.level >= other.level and self.compartments >= other.compartments

    def lub(self, other: Label) -> Label:
        return Label(max(self.level, other.level), self.compartments | other.compartments)

    def glb(self, other: Label) -> Label:
        return Label(min(self.level, other.level), self.compartments & other.compartments)

    def __str__(self) -> str:
        return format_label(self)

    def __repr__(self) -> str:
        return f"Label({format_label(self)!r})"

    @property
    def display(self) -> str:
        """The French name for people: 'Très Secret//ALPHA'."""
        name = LEVEL_NAMES_FR[self.level]
        return name + ("//" + "/".join(sorted(self.compartments)) if self.compartments else "")


BOTTOM = Label(Level.NP)


def format_label(label: Label) -> str:
    """Canonical text: `LEVEL` or `LEVEL//COMP1/COMP2` with compartments sorted."""
    if not label.compartments:
        return label.level.name
    return f"{label.level.name}//{'/'.join(sorted(label.compartments))}"


def parse_label(text: str | Label) -> Label:
    """Parse `S`, `secret`, `Très Secret//ALPHA/BRAVO`, `Diffusion Restreinte`...

    Raises UsageError naming the bad part.
    """
    if isinstance(text, Label):
        return text
    if not isinstance(text, str):
        raise UsageError(f"a label must be text, not {type(text).__name__}")
    raw = text.strip()
    if not raw:
        raise UsageError("empty label: use NP, DR, S or TS, optionally followed by //COMPARTMENT")
    level_part, sep, comp_part = raw.partition("//")
    level = _LEVEL_ALIASES.get(_fold(level_part))
    if level is None:
        raise UsageError(
            f"unknown classification level {level_part.strip()!r} in label {raw!r}: "
            "use NP, DR, S or TS (or Non Protégé, Diffusion Restreinte, Secret, Très Secret)"
        )
    compartments: set[str] = set()
    if sep:
        parts = [p.strip() for p in re.split(r"[/,]", comp_part)]
        if not any(parts):
            raise UsageError(f"label {raw!r} has '//' but no compartment after it")
        for part in parts:
            if not part:
                raise UsageError(f"empty compartment in label {raw!r}")
            comp = _fold(part).upper().replace(" ", "")
            if not COMPARTMENT_RE.match(comp):
                raise UsageError(
                    f"bad compartment {part!r} in label {raw!r}: use an upper-case word such as ALPHA"
                )
            compartments.add(comp)
    return Label(level, frozenset(compartments))


def lub(labels: Iterable[Label]) -> Label:
    """Least upper bound of labels (NP with no compartment for none)."""
    result = BOTTOM
    for label in labels:
        result = result.lub(label)
    return result
