"""Radio: range-limited links, Bernoulli or Gilbert-Elliott (bursty) loss, latency in exchange rounds.

Robots exchange messages only through this model. Each exchange every alive robot broadcasts its
state; a directed link i->j exists when both are within the smaller of their radio ranges and i is
among the `max_neighbours` nearest senders of j (a receiver cannot decode a whole crowd at once).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree


@dataclass(frozen=True)
class CommsConfig:
    model: str = "bernoulli"  # or "gilbert_elliott"
    loss: float = 0.0  # Bernoulli loss probability
    p_good_to_bad: float = 0.05  # Gilbert-Elliott transition probabilities per exchange
    p_bad_to_good: float = 0.3
    loss_good: float = 0.01
    loss_bad: float = 0.8
    latency: float = 0.0  # s
    period: float = 1.0  # s between broadcasts
    max_neighbours: int = 16  # a receiver decodes at most this many (nearest) senders per exchange


class Comms:
    def __init__(self, cfg: CommsConfig, rng: np.random.Generator) -> None:
        self.cfg = cfg
        self.rng = rng
        self.sent = 0
        self.lost = 0
        # Gilbert-Elliott channel state per directed link, kept as sorted keys src*n+dst
        self._keys = np.zeros(0, dtype=np.int64)
        self._bad = np.zeros(0, dtype=bool)

    def links(self, pos3: np.ndarray, radio: np.ndarray, alive: np.ndarray,
              near: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Directed links (src, dst): each alive receiver hears its nearest senders within both radio ranges.

        `near`: an existing nearest-neighbour query of the alive robots on themselves (nearest first, at
        least max_neighbours + 1 columns, bounded at or beyond the largest radio range), reused."""
        idx = np.flatnonzero(alive)
        if len(idx) < 2:
            e = np.zeros(0, dtype=np.int64)
            return e, e
        k = min(self.cfg.max_neighbours + 1, len(idx))
        if near is None:
            dist, nb = cKDTree(pos3[idx]).query(pos3[idx], k=k, distance_upper_bound=float(radio[idx].max()))
        else:
            dist, nb = near[0][:, :k], near[1][:, :k]
        # flat: the same pairs in the same order as a 2-D nonzero and gathers, several times cheaper
        dist, nb = np.ascontiguousarray(dist[:, 1:]).reshape(-1), np.ascontiguousarray(nb[:, 1:]).reshape(-1)
        fl = np.flatnonzero(np.isfinite(dist))
        dst = idx[fl // (k - 1)]
        src = idx[nb[fl]]
        inrange = dist[fl] <= np.minimum(radio[src], radio[dst])
        src, dst = src[inrange], dst[inrange]
        # pairs come ordered by receiver: a stable sort by sender orders them by (sender, receiver);
        # 16-bit keys take numpy's radix sort
        keys = src.astype(np.int16) if len(pos3) < 2**15 else src
        order = np.argsort(keys, kind="stable")
        return src[order], dst[order]

    def transmit(self, src: np.ndarray, dst: np.ndarray, n: int, cut: np.ndarray | None = None) -> np.ndarray:
        """Which of these messages arrive; counts sent and lost (a cut link loses everything)."""
        m = len(src)
        self.sent += m
        if m == 0:
            return np.zeros(0, dtype=bool)
        cfg = self.cfg
        if cfg.model == "gilbert_elliott":
            keys = src.astype(np.int64) * n + dst
            pos = np.searchsorted(self._keys, keys)
            pos_c = np.minimum(pos, max(len(self._keys) - 1, 0))
            known = (len(self._keys) > 0) & (self._keys[pos_c] == keys) if len(self._keys) else np.zeros(m, dtype=bool)
            bad = np.where(known, self._bad[pos_c] if len(self._bad) else False, False)
            u = self.rng.random(m)
            bad = np.where(bad, u >= cfg.p_bad_to_good, u < cfg.p_good_to_bad)
            p_loss = np.where(bad, cfg.loss_bad, cfg.loss_good)
            if m > 1 and not (np.diff(keys) > 0).all():
                order = np.argsort(keys)
                keys, bad = keys[order], bad[order]
            self._keys, self._bad = keys, bad
        else:
            p_loss = np.full(m, cfg.loss)
        ok = self.rng.random(m) >= p_loss
        if cut is not None:
            ok &= ~cut
        self.lost += int(m - ok.sum())
        return ok
