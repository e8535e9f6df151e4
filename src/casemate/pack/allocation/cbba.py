"""Consensus-Based Bundle Algorithm (Choi, Brunet & How, 2009), vectorised over agents and tasks.

Each agent builds a bundle greedily (marginal gain of inserting a task into its path; score
value * exp(-discount * arrival time)), then agents exchange their winning-bid tables over whatever
links the comms model delivers and apply the CBBA decision table (update / reset / leave) with
timestamps. Bids are warped to be non-increasing along a bundle (Johnson et al., 2012) so that
consensus converges even though time-discounted path scores are not strictly diminishing. An agent
that has not been heard of for `timeout` rounds is presumed lost and its tasks are released, which
is what re-allocates work after a failure. Tasks known done are never bid on again; "done" spreads
with every message, so after a partition heals nobody executes a task the other side finished.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NONE = -1


@dataclass(frozen=True)
class CBBAConfig:
    bundle_size: int = 4
    discount: float = 0.01  # 1/s: a task reached t seconds later is worth exp(-discount*t) of its value
    timeout: int = 25  # rounds without news of a winner before its tasks are released
    commit: int = 4  # rounds a task must stay in a bundle before its agent acts on it (lets conflicts settle)


def score_matrix(agent_pos: np.ndarray, speed: np.ndarray, task_pos: np.ndarray, value: np.ndarray,
                 discount: float) -> np.ndarray:
    """Single-task scores (N,M): value * exp(-discount * travel time)."""
    d = np.linalg.norm(agent_pos[:, None, :] - task_pos[None, :, :], axis=2)
    return value[None, :] * np.exp(-discount * d / speed[:, None])


def path_score(start: np.ndarray, speed: float, path_pos: np.ndarray, value: np.ndarray, discount: float) -> float:
    """Score of one agent's path (K,2) of tasks with values (K,)."""
    if len(path_pos) == 0:
        return 0.0
    pts = np.vstack([start[None, :], path_pos])
    t = np.cumsum(np.linalg.norm(np.diff(pts, axis=0), axis=1)) / speed
    return float((value * np.exp(-discount * t)).sum())


def _decision_table() -> np.ndarray:
    """CBBA's update/reset/leave table (Choi et al. 2009, table 1) over every combination of its
    inputs, indexed as in CBBA._merge: 1 update, 2 reset, 0 leave."""
    code = np.arange(4 * 4 * 3 * 2 * 2 * 2)
    same, newer_n = code % 2 == 1, (code // 2) % 2 == 1
    beats, cmp_m = (code // 4) % 2 == 1, (code // 8) % 3
    case_i, case_k = (code // 24) % 4, code // 96
    A, B, C, D = (case_k == q for q in range(4))
    a, b, c, d = (case_i == q for q in range(4))
    newer_m = cmp_m == 2
    # ">=" where the paper has ">": with synchronous rounds, news relayed along equally long paths
    # carries equal timestamps, and strict tests then leave stale winners in place forever.
    ge_m, le_m = cmp_m >= 1, cmp_m <= 1
    upd = A & ((a & beats) | b | (c & (newer_n | beats)) | d)
    upd |= C & ((a & ge_m & beats) | (b & ge_m) | (c & same & newer_m)
                | (c & ~same & ((newer_m & newer_n) | (ge_m & beats))) | (d & ge_m))
    upd |= D & (b | (c & newer_n))
    rst = (B & (b | (c & newer_n))) | (C & ((b & ~ge_m) | (c & ~same & newer_n & le_m)))
    return np.where(upd, 1, np.where(rst, 2, 0)).astype(np.int8)


_TABLE = _decision_table()


def _needed_bits(table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where the table's outcome depends on the timestamp comparisons, so that only those entries pay
    for them: NEED_N[case_k, case_i, beats, same] (the news about the receiver's winner n can change
    the outcome, whatever the news about m), NEED_M[case_k, case_i, beats, same, newer_n] (the news
    about the sender's winner m can, once the news about n is known)."""
    t = table.reshape(4, 4, 3, 2, 2, 2)  # case_k, case_i, cmp_m, beats, newer_n, same
    need_n = (t[:, :, :, :, 0, :] != t[:, :, :, :, 1, :]).any(axis=2)  # (4,4,2,2)
    need_m = (t != t[:, :, :1]).any(axis=2)  # (4,4,2,2,2): beats, newer_n, same
    return need_n, need_m.transpose(0, 1, 2, 4, 3)


_NEED_N, _NEED_M = _needed_bits(_TABLE)


def _stable_argsort(keys: np.ndarray, bound: int) -> np.ndarray:
    """Stable argsort of non-negative integer keys below `bound` (radix sort when they fit 16 bits)."""
    if bound < 2**15:
        return np.argsort(keys.astype(np.int16), kind="stable")
    return np.argsort(keys, kind="stable")


class CBBA:
    """State of every agent's view: winning bids Y (N,M), winners Z (N,M), timestamps S (N,N)."""

    pack_ratio = 0.25  # a round works on packed timestamp columns when at most this share of agents are winners
    lean_merge_from = 1 << 22  # timestamp entries from which merges read only the comparisons they need
    pack_budget = 2_000_000  # ... and the packed copy (agents x winners) stays this small: packing re-gathers it
                             # every round, which costs more than the cache misses of the full table it saves
    local_from = 4096  # agents from which each keeps timestamps only for the winners it names (see below)

    def __init__(self, n_agents: int, cfg: CBBAConfig | None = None, *, local: bool | None = None) -> None:
        self.cfg = cfg or CBBAConfig()
        n = n_agents
        self.n = n
        # Local timestamps (large swarms): instead of the N x N table (400 MB of scattered reads at 10,000
        # agents), agent i keeps, per task j, the round of its newest news about the winner it names for
        # that task, T[i, j] (as asynchronous CBBA keeps time stamps per task). News about an agent is
        # compared task by task: where sender and receiver name different winners for a task, each side's
        # news of the other's winner reads 0 ("never heard", as at the full table's start) unless that
        # winner is the other side itself (news of now). Not the exact algorithm: a choice for large
        # swarms, tested for conflicts and score (docs/pack.md); the full table below `local_from`.
        self.local = n >= self.local_from if local is None else bool(local)
        L = self.cfg.bundle_size
        self.task_pos = np.zeros((0, 2))
        self.task_value = np.zeros(0)
        self.compat = np.zeros((n, 0), dtype=bool)
        self.Y = np.zeros((n, 0))
        self.Z = np.zeros((n, 0), dtype=np.int64)
        self.claimed_at = np.zeros((n, 0), dtype=np.int64)  # round each agent last added each task
        # round numbers: float32 holds them exactly (to 2^24 rounds) at half the memory traffic of float64
        self.S = np.zeros((0, 0) if self.local else (n, n), dtype=np.float32)
        self.T = np.zeros((n, 0), dtype=np.float32)  # local mode: round of i's news about Z[i, j]
        # the senders' timestamps for unpacked rounds: kept equal to S by replaying each round's writes,
        # which are far fewer than the N x N entries a fresh copy would move
        self._s_buf: np.ndarray | None = None
        self.known = np.zeros((n, 0), dtype=bool)  # which tasks each agent has heard of
        self.done = np.zeros((n, 0), dtype=bool)
        self.bundle = np.full((n, L), NONE, dtype=np.int64)
        self.path = np.full((n, L), NONE, dtype=np.int64)
        self.blen = np.zeros(n, dtype=np.int64)
        self.round = 0
        self._travel: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # this round's (see build)

    @property
    def m(self) -> int:
        return len(self.task_value)

    def add_tasks(self, pos: np.ndarray, value: np.ndarray, compat: np.ndarray, known_by: np.ndarray | None = None) -> np.ndarray:
        """Append tasks; `known_by` (N,) says which agents learn of them now (others hear via messages)."""
        k = len(value)
        first = self.m
        self.task_pos = np.vstack([self.task_pos, np.asarray(pos, dtype=np.float64).reshape(k, 2)])
        self.task_value = np.concatenate([self.task_value, np.asarray(value, dtype=np.float64)])
        self.compat = np.hstack([self.compat, np.asarray(compat, dtype=bool).reshape(self.n, k)])
        self.Y = np.hstack([self.Y, np.zeros((self.n, k))])
        self.Z = np.hstack([self.Z, np.full((self.n, k), NONE, dtype=np.int64)])
        self.claimed_at = np.hstack([self.claimed_at, np.zeros((self.n, k), dtype=np.int64)])
        self.T = np.hstack([self.T, np.zeros((self.n, k), dtype=np.float32)])
        kb = np.ones(self.n, dtype=bool) if known_by is None else np.asarray(known_by, dtype=bool)
        self.known = np.hstack([self.known, np.repeat(kb[:, None], k, axis=1)])
        self.done = np.hstack([self.done, np.zeros((self.n, k), dtype=bool)])
        return np.arange(first, first + k)

    def _task_distances(self) -> np.ndarray:
        cache = getattr(self, "_dtt", None)
        if cache is None or len(cache) != self.m:
            tp = self.task_pos
            cache = np.sqrt(((tp[:, None, :] - tp[None, :, :]) ** 2).sum(-1))
            self._dtt = cache
        return cache

    # ---------------------------------------------------------------- bundle phase
    def build(self, agent_pos: np.ndarray, speed: np.ndarray, alive: np.ndarray,
              travel: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> None:
        """Each alive agent adds tasks to its bundle while it can outbid the current winner.

        `travel`: travel distances where they are not straight lines (obstacles, land and water):
        agent -> task (N,M), task -> task per agent group (G,M,M), and each agent's group (N,).
        Without it, distances are straight lines."""
        L = self.cfg.bundle_size
        lam = self.cfg.discount
        t = float(self.round)
        if self.local:
            own = (self.Z == np.arange(self.n)[:, None]) & alive[:, None]
            self.T[own] = t  # an agent's news of itself is always of now
        else:
            diag = self.S.reshape(-1)[:: self.n + 1]  # a view
            diag[alive] = t
        if self._s_buf is not None:
            self._s_buf.reshape(-1)[:: self.n + 1][alive] = t
        if self.m == 0:
            return
        self._travel = travel
        if travel is None:
            dtt = self._task_distances()
            d_at = np.sqrt(((agent_pos[:, None, :] - self.task_pos[None, :, :]) ** 2).sum(-1))
        else:
            d_at, dtt = travel[0], travel[1]
        act = np.flatnonzero(alive & (self.blen < L))
        for _ in range(L):
            if len(act) == 0:
                return
            A = len(act)
            empty = self.blen[act] == 0
            if not empty.any():
                c, q_best = self._insertion_gains(act, speed, d_at, dtt)
            else:
                # an empty path has one slot and nothing after it: the gain is the task's own score,
                # the same arithmetic the general case does there (t_prev 0, no delay term)
                c = np.empty((A, self.m))
                q_best = np.zeros((A, self.m), dtype=np.intp)
                r0 = act[empty]
                c[empty] = self.task_value[None, :] * np.exp(-lam * (d_at[r0] / speed[r0][:, None]))
                if not empty.all():
                    c[~empty], q_best[~empty] = self._insertion_gains(act[~empty], speed, d_at, dtt)
            # bid warping: never bid more than the previous bid in my bundle
            last = np.where(self.blen[act] > 0,
                            self.Y[act, np.maximum(self.bundle[act, np.maximum(self.blen[act] - 1, 0)], 0)], np.inf)
            c = np.minimum(c, last[:, None])
            mine = np.zeros((A, self.m), dtype=bool)
            bp = self.bundle[act]
            r, col = np.nonzero(bp >= 0)
            mine[r, bp[r, col]] = True
            Yi, Zi = self.Y[act], self.Z[act]
            beats = (c > Yi) | ((c == Yi) & (Zi > act[:, None])) | (Zi == NONE)
            ok = self.compat[act] & self.known[act] & ~self.done[act] & ~mine & (c > 0) & beats
            cc = np.where(ok, c, -np.inf)
            j = np.argmax(cc, axis=1)
            has = np.isfinite(cc[np.arange(A), j])
            if not has.any():
                return
            ag, j = act[has], j[has]
            q = q_best[has, j]
            bid = c[has, j]
            self.Y[ag, j] = bid
            self.Z[ag, j] = ag
            if self.local:
                self.T[ag, j] = t
            self.claimed_at[ag, j] = self.round
            self.bundle[ag, self.blen[ag]] = j
            old = self.path[ag]
            cols = np.arange(L)[None, :]
            shifted = np.concatenate([np.full((len(ag), 1), NONE), old[:, :-1]], axis=1)
            self.path[ag] = np.where(cols < q[:, None], old, np.where(cols == q[:, None], j[:, None], shifted))
            self.blen[ag] += 1
            # an agent that added nothing would compute the same again: its own rows are all it reads
            act = ag[self.blen[ag] < L]

    def _insertion_gains(self, act: np.ndarray, speed: np.ndarray, d_at: np.ndarray,
                         dtt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Best insertion gain (A,M) of every task into each agent's path, and the slot it goes in.

        d_at: agent -> task distances (N,M); dtt: task -> task (M,M), or with travel tables (see build)
        one such table per agent group. (Table lookups give the very numbers the straight-line
        arithmetic would: same expression, same rounding.)"""
        lam = self.cfg.discount
        A, L = len(act), self.cfg.bundle_size
        path = self.path[act]
        valid = path >= 0
        p0 = np.maximum(path, 0)
        if self._travel is None:
            def rows_of(idx: np.ndarray) -> np.ndarray:
                return dtt[idx]

            def pair(a: np.ndarray, b: np.ndarray) -> np.ndarray:
                return dtt[a, b]
        else:
            g = self._travel[2][act][:, None]

            def rows_of(idx: np.ndarray) -> np.ndarray:
                return dtt[g, idx]

            def pair(a: np.ndarray, b: np.ndarray) -> np.ndarray:
                return dtt[g, a, b]
        legs = np.empty((A, L))  # from the previous stop (the agent, then path[q-1]) to path[q]
        legs[:, 0] = d_at[act, p0[:, 0]]
        if L > 1:
            legs[:, 1:] = pair(p0[:, :-1], p0[:, 1:])
        legs = np.where(valid, legs, 0.0)
        arr = np.cumsum(legs / speed[act][:, None], axis=1)  # arrival time at path[q]
        contrib = np.where(valid, self.task_value[p0] * np.exp(-lam * arr), 0.0)
        suffix = np.concatenate([np.cumsum(contrib[:, ::-1], axis=1)[:, ::-1], np.zeros((A, 1))], axis=1)  # (A,L+1)
        t_prev = np.concatenate([np.zeros((A, 1)), arr], axis=1)  # (A,L+1) time at prev of slot q
        has_next = np.concatenate([valid, np.zeros((A, 1), dtype=bool)], axis=1)
        # only slots up to the longest bundle matter; distances to every task come from the tables
        Q = int(self.blen[act].max()) + 1
        ptask = np.concatenate([np.full((A, 1), -1), path], axis=1)[:, :Q]  # predecessor task or -1
        d_pj = rows_of(np.maximum(ptask, 0))  # (A,Q,M)
        d_pj[:, 0, :] = d_at[act]
        ntask = np.concatenate([path, np.full((A, 1), -1)], axis=1)[:, :Q]
        d_jn = rows_of(np.maximum(ntask, 0))
        d_pn = np.concatenate([legs, np.zeros((A, 1))], axis=1)[:, :Q]
        has_next, t_prev, suffix = has_next[:, :Q], t_prev[:, :Q], suffix[:, :Q]
        sp = speed[act][:, None, None]
        gain = self.task_value[None, None, :] * np.exp(-lam * (t_prev[:, :, None] + d_pj / sp))
        delay = np.where(has_next[:, :, None], (d_pj + d_jn - d_pn[:, :, None]) / sp, 0.0)
        gain = gain + (np.exp(-lam * delay) - 1.0) * suffix[:, :, None]
        slot_ok = np.arange(Q)[None, :] <= self.blen[act][:, None]
        gain = np.where(slot_ok[:, :, None], gain, -np.inf)
        q_best = np.argmax(gain, axis=1)  # (A,M)
        c = np.take_along_axis(gain, q_best[:, None, :], axis=1)[:, 0, :]
        return c, q_best

    # ---------------------------------------------------------------- consensus phase
    def snapshot(self, with_s: bool = True) -> tuple[np.ndarray | None, ...]:
        """The state agents broadcast. `with_s=False` leaves the (N,N) timestamps out: only for a snapshot
        consumed by the very next consensus, whose timestamps then still are the current ones (a build in
        between changes only the diagonal, which the decision table never reads)."""
        if self.local:  # the local timestamps are small: always copied (the round writes them in place)
            return (self.Y.copy(), self.Z.copy(), self.T.copy(), self.done.copy(), self.known.copy())
        return (self.Y.copy(), self.Z.copy(), self.S.copy() if with_s else None, self.done.copy(),
                self.known.copy())

    def consensus(self, src: np.ndarray, dst: np.ndarray, snap: tuple[np.ndarray | None, ...] | None = None) -> None:
        """Receivers dst apply messages from src (snapshot = the senders' state when they sent).

        A receiver handles its messages one after another (the c-th message of every receiver forms
        one vectorised batch). Only (message, task) entries where sender and receiver disagreed at the
        start of the round are evaluated: an entry skipped that way is at worst news one round late.
        """
        Ys, Zs, Ss, Ds, Ks = snap if snap is not None else self.snapshot(with_s=False)
        if Ys.shape[1] < self.m:  # sent before newer tasks were added: the sender knew nothing of them
            pad = self.m - Ys.shape[1]
            Ys = np.pad(Ys, ((0, 0), (0, pad)))
            Zs = np.pad(Zs, ((0, 0), (0, pad)), constant_values=NONE)
            Ds = np.pad(Ds, ((0, 0), (0, pad)))
            Ks = np.pad(Ks, ((0, 0), (0, pad)))
            if self.local and Ss is not None:
                Ss = np.pad(Ss, ((0, 0), (0, pad)))
        t = float(self.round)
        if len(src) == 0:
            self._release()
            return
        n = self.n
        if len(src) < 2 or (np.diff(src) >= 0).all():
            order = _stable_argsort(dst, n)  # links come sorted by sender: a stable sort by receiver suffices
        else:
            order = np.lexsort((src, dst))
        src, dst = src[order], dst[order]
        start = np.r_[0, np.flatnonzero(np.diff(dst)) + 1]
        rank = np.arange(len(dst)) - np.repeat(start, np.diff(np.r_[start, len(dst)]))
        recv = dst[start]
        if self.m:
            if Ds.any():
                self.done[recv] |= np.logical_or.reduceat(Ds[src], start, axis=0)
            if not Ks.all():
                self.known[recv] |= np.logical_or.reduceat(Ks[src], start, axis=0)
            # bids identify entries: equal bids with different winners would need an exact float tie
            # only tasks on which somebody still disagrees can differ across a link
            open_j = np.flatnonzero((Ys != Ys[:1]).any(axis=0) | (self.Y != self.Y[:1]).any(axis=0))
        # messages grouped by rank (the c-th message of each receiver), receivers in order within a rank:
        # the entries found below then come grouped by rank too
        src_g = src
        by_rank = _stable_argsort(rank, int(rank.max()) + 1)
        src, dst, rank = src[by_rank], dst[by_rank], rank[by_rank]
        if self.m:
            # row gathers with np.take and a flat nonzero: the same entries in the same order, several
            # times cheaper than fancy-indexed rows and a 2-D nonzero
            if 2 * len(open_j) > self.m:
                e, j = np.divmod(np.flatnonzero(np.take(Ys, src, axis=0) != np.take(self.Y, dst, axis=0)), self.m)
            else:
                e, jl = np.divmod(np.flatnonzero(np.take(Ys[:, open_j], src, axis=0)
                                                 != np.take(self.Y[:, open_j], dst, axis=0)), len(open_j))
                j = open_j[jl]
        else:
            e = j = np.zeros(0, dtype=np.int64)
        if self.local:
            self._consensus_local(src, dst, rank, e, j, Ys, Zs, Ss, t)
            return
        rows_mode = 2 * self.m >= n  # relaying whole rows is cheaper than picking the winners' columns
        # Timestamps are read only in the columns of agents named as winners (in the messages or by the
        # receivers; a merge only copies winners from messages). With few winners the round works on
        # those columns alone (SW, N x |W|): cache-sized instead of N x N, and no N x N snapshot. Other
        # columns only take direct news (S[i, k] = now), written once at the end: nothing reads them
        # during the round. Column `loc[n]` stands for "no winner" (read, never used, by the table).
        if not rows_mode and self.m:
            W = np.unique(np.concatenate([Zs[Zs >= 0], self.Z[self.Z >= 0]]))
        else:
            W = None
        if W is not None and len(W) <= self.pack_ratio * n and n * len(W) <= self.pack_budget:
            w = len(W)
            loc = np.full(n + 1, w, dtype=np.int64)
            loc[W] = np.arange(w)
            SW = np.zeros((n, w + 1), dtype=self.S.dtype)
            SW[:, :w] = self.S[:, W]
            SsW = SW.copy() if Ss is None else np.pad(Ss[:, W], ((0, 0), (0, 1)))
            packed = True
        else:
            loc = np.r_[np.arange(n), 0]
            SW = self.S
            if Ss is None and not rows_mode:
                if self._s_buf is None:
                    self._s_buf = self.S.copy()
                Ss = self._s_buf  # equal to S now; the round's writes are replayed into it at the end
            SsW = self.S.copy() if Ss is None else Ss
            packed = False
        log: list[np.ndarray] | None = [] if (not packed and not rows_mode and self._s_buf is not None) else None
        # Relayed timestamps only matter for agents named as winners (the table reads S[., winner] and the
        # timeout checks winners): each message relays just the columns of the winners that sender and
        # receiver name, so a round is O(messages x tasks), not O(messages x agents). Direct news
        # (S[i, k] = now) is kept for every link.
        tmask = np.zeros((n, self.m), dtype=bool)  # entries changed by an earlier message this round
        trow = np.zeros(n, dtype=bool)
        if len(e) == 0:
            # nothing to merge (the steady state): timestamps can be relayed in one go, order is moot
            if rows_mode:
                SW[recv] = np.maximum(SW[recv], np.maximum.reduceat(SsW[src_g], start, axis=0))
            elif self.m:
                cols = np.concatenate([Zs[src], self.Z[dst]], axis=1)
                ok = cols >= 0
                ri, cc = np.broadcast_to(dst[:, None], cols.shape)[ok], loc[cols[ok]]
                rk = np.broadcast_to(src[:, None], cols.shape)[ok]
                np.maximum.at(SW, (ri, cc), SsW[rk, cc])
                if log is not None:
                    log.append(ri * n + cc)
            self._finish_round(SW, W if packed else None, src, dst, t, log)
            return
        # flat views: 1-D gathers and scatters are several times cheaper than 2-D fancy indexing
        w1 = SW.shape[1]
        swf, ssf = SW.reshape(-1), SsW.reshape(-1)
        tmf = tmask.reshape(-1)
        for k, i, ee, jj in _rank_batches(src, dst, rank, e, j, tmask, trow):
            if len(ee):
                ti, fij = self._merge(src[ee], dst[ee], jj, Ys, Zs, swf, ssf, w1, loc)
                if len(ti):
                    tmf[fij] = True
                    trow[ti] = True
            if rows_mode:
                SW[i] = np.maximum(SW[i], SsW[k])
                SW[i, k] = t
            elif packed:
                # the winners either side names; "no winner" (-1) lands in the scratch column
                cc = loc[np.concatenate([Zs[k], self.Z[i]], axis=1)]  # (E_b, 2M)
                fi = (i * w1)[:, None] + cc
                swf[fi] = np.maximum(swf[fi], ssf[(k * w1)[:, None] + cc])
                swf[i * w1 + loc[k]] = t  # direct news; agents outside W write the scratch column
            else:
                if self.m:
                    cols = np.concatenate([Zs[k], self.Z[i]], axis=1)
                    # the sender's own column is overwritten by the direct news below, and the receiver's
                    # own column already holds this round (set in build): relaying either changes nothing
                    own_i = (swf[i * (w1 + 1)] == t)[:, None]
                    ok = (cols >= 0) & (cols != k[:, None]) & ~((cols == i[:, None]) & own_i)
                    ok[:, self.m:] &= cols[:, self.m:] != cols[:, : self.m]  # both name the same winner: once
                    fi = (i * w1)[:, None] + cols
                    fk = (k * w1)[:, None] + cols
                    fi, fk = fi[ok], fk[ok]
                    # write (and later replay) only the entries that take newer news: a minority
                    news = ssf[fk]
                    newer = news > swf[fi]
                    fi = fi[newer]
                    swf[fi] = news[newer]
                    if log is not None:
                        log.append(fi)
                swf[i * w1 + k] = t
        self._finish_round(SW, W if packed else None, src, dst, t, log)

    def _consensus_local(self, src: np.ndarray, dst: np.ndarray, rank: np.ndarray, e: np.ndarray, j: np.ndarray,
                         Ys: np.ndarray, Zs: np.ndarray, Ts: np.ndarray, t: float) -> None:
        """consensus() with local timestamps: messages by rank as there, each merge then relay reading the
        (N, M) tables only."""
        tmask = np.zeros((self.n, self.m), dtype=bool)
        trow = np.zeros(self.n, dtype=bool)
        for k, i, ee, jj in _rank_batches(src, dst, rank, e, j, tmask, trow):
            if len(ee):
                ti, fij = self._merge_local(src[ee], dst[ee], jj, Ys, Zs, Ts, t)
                if len(ti):
                    tmask.reshape(-1)[fij] = True
                    trow[ti] = True
            if self.m:
                # relay, task by task: the sender's news of the winner the receiver names, where the sender
                # names the same one (of now where that winner is the sender itself)
                Zi, Ti = np.take(self.Z, i, axis=0), np.take(self.T, i, axis=0)
                sk = np.where(np.take(Zs, k, axis=0) == Zi, np.take(Ts, k, axis=0), np.float32(0))
                sk = np.where(Zi == k[:, None], np.float32(t), sk)
                np.maximum(Ti, sk, out=Ti)
                # receivers are unique within a rank: a flat put of their rows (cheaper than a row scatter)
                np.put(self.T, (i * self.m)[:, None] + np.arange(self.m), Ti)
        self._release()

    def _merge_local(self, kk: np.ndarray, ii: np.ndarray, j: np.ndarray, Ys: np.ndarray, Zs: np.ndarray,
                     Ts: np.ndarray, t: float) -> tuple[np.ndarray, np.ndarray]:
        """_merge with local timestamps."""
        m = self.m
        fk, fi = kk * m + j, ii * m + j
        Yf, Zf, Tf = self.Y.reshape(-1), self.Z.reshape(-1), self.T.reshape(-1)
        yk, zk = Ys.reshape(-1)[fk], Zs.reshape(-1)[fk]
        yi, zi = Yf[fi], Zf[fi]
        ti, tk = Tf[fi], Ts.reshape(-1)[fk]
        same = zi == zk
        beats = (yk > yi) | ((yk == yi) & (zk < zi))
        # Where sender and receiver both name a third agent (nearly every entry of a large swarm), the
        # table comes down to: the same winner -> update if the sender's news of it is newer; different
        # winners -> the receiver never heard of the sender's (news 0) nor the sender of the receiver's,
        # so update if the sender's bid beats, else leave (never a reset). tests/pack checks it against
        # the table on random states; the other entries go through the table.
        act = np.where(same, tk > ti, beats).view(np.int8)
        direct = (zk < 0) | (zk == kk) | (zk == ii) | (zi < 0) | (zi == ii) | (zi == kk)
        if direct.any():
            d = np.flatnonzero(direct)
            act = act.copy()
            act[d] = _local_table_act(kk[d], ii[d], yk[d], zk[d], yi[d], zi[d], ti[d], tk[d],
                                      _news_of_m(same[d], ti[d], zk[d], ii[d], t), t)
        ch = np.flatnonzero(act)  # the entries that change (about one in ten): the writes are worked out there
        upd = act[ch] == 1
        fc = fi[ch]
        zc = zk[ch]
        Yf[fc] = np.where(upd, yk[ch], 0.0)
        Zf[fc] = np.where(upd, zc, NONE)
        # what it knew of the new winner (the relay then adds the sender's)
        Tf[fc] = np.where(upd, _news_of_m(same[ch], ti[ch], zc, ii[ch], t), 0.0)
        return ii[ch], fc

    def _finish_round(self, SW: np.ndarray, W: np.ndarray | None, src: np.ndarray, dst: np.ndarray, t: float,
                      log: list[np.ndarray] | None = None) -> None:
        """Write packed timestamp columns back, record direct news on every link, keep the senders'
        buffer equal to S (replaying this round's writes, or dropping it), apply the release rule."""
        direct = dst * self.n + src
        if W is not None:
            self.S[:, W] = SW[:, : len(W)]
        self.S.reshape(-1)[direct] = t
        buf = self._s_buf
        if buf is not None:
            if W is not None:
                self._s_buf = None  # packed rounds need no buffer; a later unpacked round copies S afresh
            elif log is not None:
                idx = np.concatenate([*log, direct])
                buf.reshape(-1)[idx] = self.S.reshape(-1)[idx]
            else:
                self._s_buf = None  # written in ways not replayed (whole rows): rebuilt when needed
        self._release()

    def _merge(self, kk: np.ndarray, ii: np.ndarray, j: np.ndarray, Ys: np.ndarray, Zs: np.ndarray,
               swf: np.ndarray, ssf: np.ndarray, w1: int, loc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The CBBA decision table for entries (sender kk, receiver ii, task j), receivers unique per task.

        swf / ssf: the receivers' / senders' timestamps, flattened rows of w1 columns, agents mapped to
        columns by `loc` (loc[-1]: "no winner"). Returns the changed entries: receivers, flat (i, j)."""
        m = self.m
        fk, fi = kk * m + j, ii * m + j
        Yf, Zf = self.Y.reshape(-1), self.Z.reshape(-1)
        yk, zk = Ys.reshape(-1)[fk], Zs.reshape(-1)[fk]
        yi, zi = Yf[fi], Zf[fi]
        # the decision table (_decision_table) as one lookup: sender case (A: names itself, B: names
        # the receiver, C: a third agent, D: nobody), receiver case (a, b, c, d alike), comparisons
        case_k = 2 - 2 * (zk == kk) - (zk == ii) + (zk < 0)
        case_i = 2 - 2 * (zi == ii) - (zi == kk) + (zi < 0)
        beats = (yk > yi) | ((yk == yi) & (zk < zi))
        same = zi == zk
        if swf.size < self.lean_merge_from:
            # a table that stays in cache: reading every comparison is cheaper than choosing
            ck, ci = loc[zk], loc[zi]
            bk, bi = kk * w1, ii * w1
            sk_m, si_m = ssf[bk + ck], swf[bi + ck]  # news about the sender's winner m
            cmp_m = (sk_m > si_m) * 1 + (sk_m >= si_m)  # 0: older, 1: as new, 2: newer news of m
            newer_n = ssf[bk + ci] > swf[bi + ci]  # news about the receiver's winner n
        else:
            # In a large table the timestamps are scattered reads, the cost of a merge: they are gathered
            # only for the entries whose outcome depends on them (_needed_bits; tests/pack checks that the
            # rest get the same outcome whatever the comparison says). Most entries of a large swarm are
            # a third-party winner with a lower bid, decided by the news about n alone.
            newer_n = np.zeros(len(fk), dtype=np.int64)
            sel = np.flatnonzero(_NEED_N[case_k, case_i, beats.view(np.int8), same.view(np.int8)])
            if len(sel):
                c = loc[zi[sel]]
                newer_n[sel] = ssf[kk[sel] * w1 + c] > swf[ii[sel] * w1 + c]
            cmp_m = np.zeros(len(fk), dtype=np.int64)
            sel = np.flatnonzero(_NEED_M[case_k, case_i, beats.view(np.int8), same.view(np.int8), newer_n])
            if len(sel):
                c = loc[zk[sel]]
                sk_m, si_m = ssf[kk[sel] * w1 + c], swf[ii[sel] * w1 + c]
                cmp_m[sel] = (sk_m > si_m) * 1 + (sk_m >= si_m)
        code = ((((case_k * 4 + case_i) * 3 + cmp_m) * 2 + beats) * 2 + newer_n) * 2 + same
        act = _TABLE[code]
        upd = act == 1
        ch = act > 0
        fc = fi[ch]
        Yf[fc] = np.where(upd, yk, 0.0)[ch]
        Zf[fc] = np.where(upd, zk, NONE)[ch]
        return ii[ch], fc

    def _release(self) -> None:
        """Drop every bundle entry after the first task an agent was outbid on (CBBA's release rule)."""
        L = self.cfg.bundle_size
        rows = np.arange(self.n)
        stale = (self.Z >= 0) & (self.Z != rows[:, None])
        if stale.any():
            if self.local:
                lost = self.T < self.round - self.cfg.timeout
            else:
                lost = self.S[rows[:, None], np.maximum(self.Z, 0)] < self.round - self.cfg.timeout
            drop = stale & lost
            self.Z[drop] = NONE
            self.Y[drop] = 0.0
            self.T[drop] = 0.0
        b = self.bundle
        bv = b >= 0
        owned = np.zeros_like(bv)
        owned[bv] = (self.Z[np.nonzero(bv)[0], b[bv]] == np.nonzero(bv)[0]) & ~self.done[np.nonzero(bv)[0], b[bv]]
        bad = bv & ~owned
        if not bad.any():
            return
        first = np.where(bad.any(axis=1), np.argmax(bad, axis=1), L)
        after = (np.arange(L)[None, :] > first[:, None]) & bv
        r, col = np.nonzero(after)
        tj = b[r, col]
        still = self.Z[r, tj] == r
        self.Z[r[still], tj[still]] = NONE
        self.Y[r[still], tj[still]] = 0.0
        cut = (np.arange(L)[None, :] >= first[:, None]) & bv
        keep_tasks = np.where(cut, NONE, b)
        self.bundle = keep_tasks
        self.blen = (keep_tasks >= 0).sum(axis=1)
        self._rebuild_path()

    def _rebuild_path(self) -> None:
        """Drop from each path the tasks no longer in the bundle, keeping the order of the rest."""
        L = self.cfg.bundle_size
        inb = np.zeros((self.n, self.m + 1), dtype=bool)
        r, col = np.nonzero(self.bundle >= 0)
        inb[r, self.bundle[r, col]] = True
        p = self.path
        keep = (p >= 0) & inb[np.arange(self.n)[:, None], np.where(p >= 0, p, self.m)]
        order = np.argsort(~keep, axis=1, kind="stable")
        newp = np.take_along_axis(np.where(keep, p, NONE), order, axis=1)
        self.path = newp[:, :L]

    def committed(self) -> np.ndarray:
        """(N,) the task each agent may act on now (head of its path, held `commit` rounds), or -1."""
        head = self.path[:, 0]
        ok = head >= 0
        rows = np.flatnonzero(ok)
        ok[rows] = self.round - self.claimed_at[rows, head[rows]] >= self.cfg.commit
        return np.where(ok, head, NONE)

    def complete(self, agent: int, task: int) -> None:
        """Agent executed task: it is done (the news spreads with the agent's messages)."""
        self.done[agent, task] = True
        keep = self.bundle[agent] != task
        b = self.bundle[agent][keep]
        self.bundle[agent] = np.r_[b, np.full(self.cfg.bundle_size - len(b), NONE)]
        self.blen[agent] = (self.bundle[agent] >= 0).sum()
        self._rebuild_path()

    def withdraw(self, task: int) -> None:
        """Nobody is to do the task any more (an officer rejected it): out of every bundle, never bid on again."""
        self.done[:, task] = True
        self.compat[:, task] = False
        self.Z[:, task] = NONE
        self.Y[:, task] = 0.0
        self.T[:, task] = 0.0
        held = (self.bundle == task).any(axis=1)
        if held.any():
            b = np.where(self.bundle == task, NONE, self.bundle)
            order = np.argsort(b < 0, axis=1, kind="stable")
            self.bundle = np.take_along_axis(b, order, axis=1)
            self.blen = (self.bundle >= 0).sum(axis=1)
            self._rebuild_path()

    def step_round(self, agent_pos: np.ndarray, speed: np.ndarray, alive: np.ndarray, src: np.ndarray, dst: np.ndarray,
                   snap: tuple[np.ndarray, ...] | None = None,
                   travel: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> bool:
        """One synchronous round: build bundles, then consensus on the delivered messages.

        Returns whether any agent's winner table or bundle changed (quiet + agreed = converged).
        """
        before = (self.Z.copy(), self.bundle.copy())
        self.round += 1
        self.build(agent_pos, speed, alive, travel)
        if snap is None:
            snap = self.snapshot(with_s=False)
        live = alive[src] & alive[dst]
        self.consensus(src[live], dst[live], snap)
        return not (np.array_equal(before[0], self.Z) and np.array_equal(before[1], self.bundle))

    def run(self, agent_pos: np.ndarray, speed: np.ndarray, alive: np.ndarray,
            links: object, max_rounds: int = 500) -> int:
        """Rounds until agreed and quiet; `links(round) -> (src, dst)` gives each round's delivered messages."""
        quiet = 0
        for k in range(1, max_rounds + 1):
            src, dst = links(k)  # type: ignore[operator]
            changed = self.step_round(agent_pos, speed, alive, src, dst)
            quiet = 0 if changed else quiet + 1
            if quiet >= 2 and self.agreed(alive):
                return k
        return max_rounds

    # ---------------------------------------------------------------- observers
    def assignment(self) -> dict[int, list[int]]:
        """Each agent's path (task ids in execution order)."""
        return {i: [int(j) for j in self.path[i] if j >= 0] for i in range(self.n)}

    def conflicts(self, alive: np.ndarray | None = None) -> int:
        """Tasks that sit in more than one alive agent's bundle."""
        b = self.bundle if alive is None else self.bundle[alive]
        t = b[b >= 0]
        if len(t) == 0:
            return 0
        counts = np.bincount(t, minlength=self.m)
        return int((counts > 1).sum())

    def agreed(self, alive: np.ndarray) -> bool:
        """All alive agents hold the same winner table and every bundle matches it."""
        idx = np.flatnonzero(alive)
        if len(idx) == 0 or self.m == 0:
            return True
        Z = self.Z[idx]
        if not (Z == Z[0]).all():
            return False
        r, col = np.nonzero(self.bundle[idx] >= 0)
        return bool((Z[0][self.bundle[idx][r, col]] == idx[r]).all())

    def total_score(self, agent_pos: np.ndarray, speed: np.ndarray) -> float:
        tot = 0.0
        for i in range(self.n):
            p = [j for j in self.path[i] if j >= 0]
            tot += path_score(agent_pos[i], float(speed[i]), self.task_pos[p], self.task_value[p], self.cfg.discount)
        return tot


def _news_of_m(same: np.ndarray, ti: np.ndarray, zk: np.ndarray, ii: np.ndarray, t: float) -> np.ndarray:
    """The receiver's news (local timestamps) of the winner the sender names: its own where both name the
    same one, now where that winner is the receiver itself, else none."""
    return np.where(same, ti, np.where(zk == ii, np.float32(t), np.float32(0)))


def _local_table_act(kk: np.ndarray, ii: np.ndarray, yk: np.ndarray, zk: np.ndarray, yi: np.ndarray, zi: np.ndarray,
                     ti: np.ndarray, tk: np.ndarray, si_m: np.ndarray, t: float) -> np.ndarray:
    """The decision table's action (0 leave, 1 update, 2 reset) for merge entries with local timestamps:
    sender kk's bid yk on winner zk (its news of it tk) against receiver ii's yi, zi, ti; si_m is the
    receiver's news of the sender's winner."""
    case_k = 2 - 2 * (zk == kk) - (zk == ii) + (zk < 0)
    case_i = 2 - 2 * (zi == ii) - (zi == kk) + (zi < 0)
    beats = (yk > yi) | ((yk == yi) & (zk < zi))
    same = zi == zk
    # timestamps task by task: of the winner either side names for this task; of another agent, none
    sk_m = tk  # the sender's news of its own winner m
    sk_n = np.where(same, tk, np.where(zi == kk, np.float32(t), np.float32(0)))  # the sender's news of n
    cmp_m = (sk_m > si_m) * 1 + (sk_m >= si_m)
    newer_n = sk_n > ti
    code = ((((case_k * 4 + case_i) * 3 + cmp_m) * 2 + beats) * 2 + newer_n) * 2 + same
    return _TABLE[code]


def _rank_batches(src: np.ndarray, dst: np.ndarray, rank: np.ndarray, e: np.ndarray, j: np.ndarray,
                  tmask: np.ndarray, trow: np.ndarray):
    """The round's messages rank by rank, as (senders, receivers, merge entries, their tasks): each
    rank's entries plus those of its messages whose receiver took news earlier in the round (`tmask`
    and `trow`, which the caller updates between batches; read lazily, batch by batch)."""
    n_ranks = int(rank[-1]) + 1
    bounds = np.searchsorted(rank[e], np.arange(n_ranks + 1))
    rank_bounds = np.searchsorted(rank, np.arange(n_ranks + 1))
    for r in range(n_ranks):
        ee, jj = e[bounds[r]:bounds[r + 1]], j[bounds[r]:bounds[r + 1]]
        m_lo, m_hi = rank_bounds[r], rank_bounds[r + 1]
        k, i = src[m_lo:m_hi], dst[m_lo:m_hi]
        hot = m_lo + np.flatnonzero(trow[i])
        if len(hot):
            e2, j2 = np.divmod(np.flatnonzero(np.take(tmask, dst[hot], axis=0)), tmask.shape[1])
            if len(e2):
                # a repeated (message, task) entry computes the same result twice: harmless
                ee, jj = np.concatenate([ee, hot[e2]]), np.concatenate([jj, j2])
        yield k, i, ee, jj
