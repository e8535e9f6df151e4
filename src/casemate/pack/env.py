"""A PettingZoo ParallelEnv over the same simulator, so learned policies train against the same physics.

Each robot is an agent. Action: desired velocity as a fraction of its top speed (Box(-1, 1, (2,))),
still filtered by collision avoidance, dynamics and the domain. Observation: own position (scaled to
the area), velocity, endurance left, and the offset to the nearest target not yet identified.
Reward: the team's newly covered share of the area this step (x100), minus 1 per robot lost.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces
from pettingzoo import ParallelEnv

from casemate.pack.scenario import Scenario, load_scenario
from casemate.pack.sim import Simulation


class PackEnv(ParallelEnv):
    metadata = {"name": "casemate_pack_v0", "render_modes": []}

    def __init__(self, scenario: Scenario | str = "harbour-search", max_steps: int | None = None) -> None:
        self.scenario = load_scenario(scenario) if isinstance(scenario, str) else scenario
        self.max_steps = max_steps or self.scenario.steps
        n = self.scenario.robot_count
        self.possible_agents = [f"robot_{i}" for i in range(n)]
        self._obs_space = spaces.Box(-np.inf, np.inf, shape=(7,), dtype=np.float32)
        self._act_space = spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
        self.sim: Simulation | None = None

    def observation_space(self, agent: str) -> spaces.Space:
        return self._obs_space

    def action_space(self, agent: str) -> spaces.Space:
        return self._act_space

    def close(self) -> None:
        if self.sim is not None:
            self.sim.close()

    def reset(self, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[dict, dict]:
        self.close()
        self.sim = Simulation(self.scenario, 0 if seed is None else int(seed), record_every=10**9, track_redundancy=False)
        self.agents = list(self.possible_agents)
        self._cov = self.sim.coverage() if np.isfinite(self.sim.coverage()) else 0.0
        self._steps = 0
        return self._observe(), {a: {} for a in self.agents}

    def _observe(self) -> dict[str, np.ndarray]:
        sim = self.sim
        assert sim is not None
        f, w = sim.fleet, sim.world
        x0, y0, x1, y1 = w.extent
        size = np.array([x1 - x0, y1 - y0])
        vmax = f.param("max_speed")
        obs = np.zeros((len(f), 7), dtype=np.float32)
        obs[:, 0:2] = (f.pos - [x0, y0]) / size
        obs[:, 2:4] = f.vel / vmax[:, None]
        obs[:, 4] = f.energy / f.param("endurance")
        open_t = sim.target_pos[sim.target_best < 2] if len(sim.target_pos) else np.zeros((0, 2))
        if len(open_t):
            d = f.pos[:, None, :] - open_t[None, :, :]
            k = np.argmin((d**2).sum(-1), axis=1)
            obs[:, 5:7] = (open_t[k] - f.pos) / size
        return {a: obs[int(a.split("_")[1])] for a in self.agents}

    def step(self, actions: dict[str, np.ndarray]) -> tuple[dict, dict, dict, dict, dict]:
        sim = self.sim
        assert sim is not None
        f = sim.fleet
        v = np.zeros((len(f), 2))
        for a, act in actions.items():
            v[int(a.split("_")[1])] = np.clip(np.asarray(act, dtype=np.float64), -1, 1)
        sim.v_override = v * f.param("max_speed")[:, None]
        alive_before = f.alive.copy()
        sim.step()
        self._steps += 1
        cov = sim.coverage() if np.isfinite(sim.coverage()) else 0.0
        team = 100.0 * (cov - self._cov)
        self._cov = cov
        lost = alive_before & ~f.alive
        rew = {a: float(team - lost[int(a.split("_")[1])]) for a in self.agents}
        term = {a: bool(not f.alive[int(a.split("_")[1])]) for a in self.agents}
        trunc = {a: self._steps >= self.max_steps for a in self.agents}
        obs = self._observe()
        infos = {a: {} for a in self.agents}
        self.agents = [a for a in self.agents if not term[a] and not trunc[a]]
        return obs, rew, term, trunc, infos
