"""Robot types and the fleet state: arrays over all robots, never one Python object per robot."""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from casemate.pack.world import DOMAINS

# what a robot may be given: bit flags, from the scenario's `role` (auto = all three)
SEARCH, SURVEIL, TASKS = 1, 2, 4


@dataclass(frozen=True)
class RobotType:
    """One kind of robot. Speeds in m/s, acceleration m/s^2, turn rate rad/s, endurance s, ranges m.

    `ifov` is the sensor's effective angular resolution (rad per pixel, blur and haze included): what it can tell apart at a range
    (detect/recognise/identify) follows from pixels on target, like the imagery pipeline's DRI grading.
    """

    name: str
    domain: str
    max_speed: float
    max_accel: float
    turn_rate: float
    endurance: float
    sensor_range: float
    ifov: float
    p_detect: float
    radio_range: float
    radius: float
    altitude: float = 0.0


BUILTIN_TYPES: dict[str, RobotType] = {
    t.name: t
    for t in (
        RobotType("quadcopter", "air", 15.0, 6.0, 3.0, 1800.0, 60.0, 0.017, 0.9, 800.0, 0.5, 50.0),
        RobotType("fixed_wing", "air", 25.0, 3.0, 0.5, 7200.0, 120.0, 0.0087, 0.85, 2000.0, 1.5, 120.0),
        RobotType("ugv", "ground", 8.0, 2.0, 1.0, 14400.0, 40.0, 0.026, 0.8, 600.0, 1.0, 0.0),
        RobotType("usv", "surface", 10.0, 1.5, 0.6, 28800.0, 80.0, 0.013, 0.85, 1500.0, 2.0, 0.0),
    )
}

TYPE_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(RobotType))


@dataclass
class Fleet:
    """State of all robots as arrays (N rows)."""

    types: list[RobotType]
    type_id: np.ndarray  # (N,) index into types
    pos: np.ndarray  # (N,2)
    vel: np.ndarray  # (N,2)
    heading: np.ndarray  # (N,)
    alive: np.ndarray  # (N,) bool
    energy: np.ndarray  # (N,) seconds of endurance left

    @classmethod
    def create(cls, types: list[RobotType], type_id: np.ndarray, pos: np.ndarray, heading: np.ndarray) -> Fleet:
        n = len(type_id)
        fleet = cls(
            types=types,
            type_id=np.asarray(type_id, dtype=np.int64),
            pos=np.asarray(pos, dtype=np.float64).copy(),
            vel=np.zeros((n, 2)),
            heading=np.asarray(heading, dtype=np.float64).copy(),
            alive=np.ones(n, dtype=bool),
            energy=np.zeros(n),
        )
        fleet.energy[:] = fleet.param("endurance")
        return fleet

    def __len__(self) -> int:
        return len(self.type_id)

    def param(self, name: str) -> np.ndarray:
        """Per-robot array of a type parameter (cached)."""
        cache = self.__dict__.setdefault("_params", {})
        if name not in cache:
            if name == "domain":
                table = np.array([DOMAINS.index(t.domain) for t in self.types], dtype=np.int64)
            else:
                table = np.array([getattr(t, name) for t in self.types], dtype=np.float64)
            cache[name] = table[self.type_id]
        return cache[name]

    @property
    def domain(self) -> np.ndarray:
        return self.param("domain")

    def pos3(self) -> np.ndarray:
        """Positions with altitude: aircraft at their altitude never collide with boats."""
        return np.column_stack([self.pos, self.param("altitude")])
