"""The one policy function: every read path asks `can_read` and nothing else."""

from __future__ import annotations

from dataclasses import dataclass, field

from casemate.security.labels import Label

ROLES = ("admin", "officer", "analyst")


@dataclass(frozen=True, slots=True)
class User:
    name: str
    clearance: Label
    roles: frozenset[str] = field(default_factory=frozenset)
    disabled: bool = False

    def has_role(self, role: str) -> bool:
        return not self.disabled and role in self.roles


def can_read(user: User, label: Label) -> bool:
    """May `user` read an item labelled `label`? A disabled user reads nothing."""
    return not user.disabled and user.clearance.dominates(label)
