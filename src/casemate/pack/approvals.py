"""An officer in the loop: tasks a scenario's approval rules mark wait for a decision before any robot
acts on them.

A marked task is allocated like any other (a robot may go and wait at its stand-off point) but it is
never done until it is approved. A rejection, or a timeout whose rule says `drop`, withdraws the task
from the allocation: whoever held it is free for the rest. While a task waits, the others go on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from casemate.johnson import LEVELS
from casemate.pack.scenario import Scenario, Target
from casemate.pack.world import points_in_polygon

FREE, WAITING, APPROVED, REJECTED, DROPPED = 0, 1, 2, 3, 4
GATE_NAMES = {FREE: "free", WAITING: "waiting", APPROVED: "approved", REJECTED: "rejected", DROPPED: "dropped"}
# a robot may complete a task only in these states
ACTIONABLE = np.array([True, False, True, False, False])


@dataclass(frozen=True)
class Decision:
    task: str  # the target's id (or its index)
    decision: str  # "approve" | "reject"
    at: float = 0.0  # simulated time it reaches the pack (0: before the start)
    by: str = ""
    reason: str = ""


def target_ids(sc: Scenario) -> list[str]:
    return [t.id or str(i) for i, t in enumerate(sc.targets)]


def rule_for(sc: Scenario, index: int, target: Target, position: np.ndarray, level: int) -> int | None:
    """The first approval rule that marks this target's task, or None."""
    for k, rule in enumerate(sc.approvals):
        if rule.class_ is not None:
            wanted = [rule.class_] if isinstance(rule.class_, str) else rule.class_
            if target.cls not in wanted:
                continue
        if rule.level is not None and level < LEVELS.index(rule.level):
            continue
        zone = sc.approval_zones[k] if k < len(sc.approval_zones) else None
        if zone is not None and not points_in_polygon(position[None, :], zone)[0]:
            continue
        return k
    return None


def marked_tasks(sc: Scenario) -> dict[str, int]:
    """Target id -> index of the rule that marks it, for the targets the pack visits."""
    out = {}
    for i, (tid, t) in enumerate(zip(target_ids(sc), sc.targets, strict=True)):
        if not (t.visit and sc.objectives["visit"]):
            continue
        k = rule_for(sc, i, t, np.array(t.position), LEVELS.index(t.level))
        if k is not None:
            out[tid] = k
    return out
