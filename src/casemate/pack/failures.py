"""Failures: robots lost at scheduled or random times, links cut for a while, tasks appearing mid-mission."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Loss:
    time: float
    robots: tuple[int, ...] = ()
    fraction: float = 0.0  # lose this share of the alive robots (chosen by the run's seed)


@dataclass(frozen=True)
class Cut:
    """No link crosses the line axis=value between start and end (a partition), or touches `robots`."""

    start: float
    end: float
    axis: str = "x"
    value: float = 0.0
    robots: tuple[int, ...] = ()


@dataclass(frozen=True)
class NewTask:
    time: float
    position: tuple[float, float]
    level: str = "D"
    value: float = 1.0
    size: float = 5.0


@dataclass
class FailureConfig:
    losses: list[Loss] = field(default_factory=list)
    random_rate: float = 0.0  # robot losses per robot-hour
    cuts: list[Cut] = field(default_factory=list)
    new_tasks: list[NewTask] = field(default_factory=list)


def losses_now(cfg: FailureConfig, t: float, dt: float, alive: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Mask of robots lost in the step (t, t+dt]."""
    lost = np.zeros(len(alive), dtype=bool)
    for ev in cfg.losses:
        if t < ev.time <= t + dt:
            if ev.robots:
                lost[list(ev.robots)] = True
            if ev.fraction > 0:
                idx = np.flatnonzero(alive)
                k = int(round(ev.fraction * len(idx)))
                lost[rng.choice(idx, size=k, replace=False)] = True
    if cfg.random_rate > 0:
        p = 1.0 - np.exp(-cfg.random_rate * dt / 3600.0)
        lost |= rng.random(len(alive)) < p
    return lost & alive


def cut_mask(cfg: FailureConfig, t: float, src: np.ndarray, dst: np.ndarray, pos: np.ndarray) -> np.ndarray | None:
    active = [c for c in cfg.cuts if c.start <= t < c.end]
    if not active:
        return None
    cut = np.zeros(len(src), dtype=bool)
    for c in active:
        if c.robots:
            isolated = np.zeros(len(pos), dtype=bool)
            isolated[list(c.robots)] = True
            cut |= isolated[src] | isolated[dst]
        else:
            ax = 0 if c.axis == "x" else 1
            cut |= (pos[src, ax] < c.value) != (pos[dst, ax] < c.value)
    return cut
