"""The allocation runner: each radio exchange hands CBBA one round, run on a worker thread beside the
motion of that step and the next (on two cores they overlap); reads of the allocation wait for it.

The robots act on the allocation of the round before (an AllocView, with their own completions applied),
the way a robot keeps flying its task while its computer works out the next round; the completions are
handed to CBBA in order before the next round, where a one-thread run applies them too, so where and
when the thread ran never changes the run."""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

from casemate.pack.allocation.cbba import CBBA
from casemate.pack.failures import cut_mask
from casemate.pack.tasks import AllocView


class AllocationRunner:
    """The allocation half of a Simulation (a mixin: the state lives on the Simulation)."""

    def _exchange(self) -> None:
        f = self.fleet
        # the neighbour query stays here (avoidance reuses it this step); the radio links, their losses and
        # the round run on the worker thread, in exchange order: nothing else touches the radio's state
        # (its random stream, the channel states, the counts; metrics() settles first)
        radio = (f.pos3(), f.param("radio_range"), f.alive.copy(), self._near_now(), self.t, len(f))
        cb = self.cbba  # the previous round settled, the completions since handed over
        if cb.m == 0:
            self._transmit(*radio, f.pos)  # no round to run: the radio still runs (and counts)
            return
        if self._goals_moved:
            self._move_goals()
            self._goals_moved = False
        if self._task_pos_moved:
            cb.task_pos = self.target_pos[self.task_target].copy()
            cb._dtt = None
            self._task_pos_moved = False
        # without latency the messages are consumed this round: the (N,N) timestamps need no copy
        snap = cb.snapshot(with_s=self.latency_rounds > 0)
        # The round runs in a thread while the planning, avoidance, motion and sensing of this step and the
        # next go on (numpy and the KD-trees release the GIL, so on two cores they overlap). Meanwhile the
        # robots act on the allocation as the previous round left it (self._view); their completions are
        # queued and handed to CBBA, in order, before the next round, which is where a sequential run
        # would apply them too. Nothing else touches the allocation state while the round runs (reads
        # go through self.cbba, which waits for it), so the same seed still gives the same run.
        self._view = AllocView(cb)
        alive = f.alive.copy()
        if self.flights:  # a robot flying a ground station's mission is out of the allocation meanwhile
            alive[list(self.flights)] = False
        pos = f.pos.copy()
        args = (pos, f.param("max_speed"), alive, snap, self._travel_tables())
        self._round = self._submit(self._radio_round, radio, args)

    def _transmit(self, pos3: np.ndarray, radio: np.ndarray, alive: np.ndarray, near: Any, t: float, n: int,
                  pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """This exchange's delivered messages (src, dst): links from the neighbour query, cuts, losses."""
        src, dst = self.comms.links(pos3, radio, alive, near)
        cut = cut_mask(self.sc.failures, t, src, dst, pos)
        ok = self.comms.transmit(src, dst, n, cut)
        return src[ok], dst[ok]

    def _radio_round(self, radio: tuple[Any, ...], args: tuple[Any, ...]) -> bool:
        """The radio of one exchange, then its allocation round (on the worker thread)."""
        pos, speed, alive, snap, travel = args
        src, dst = self._transmit(*radio, pos)
        cb = self._cbba
        self._inflight.append((cb.round + self.latency_rounds, snap, src, dst))
        # one round per exchange; with latency the messages are the senders' state rounds ago
        if self._inflight[0][0] <= cb.round:
            _, snap, s_src, s_dst = self._inflight.popleft()
        else:
            snap, s_src, s_dst = None, np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        return cb.step_round(pos, speed, alive, s_src, s_dst, snap, travel)

    inline_below = 200  # robots: smaller fleets run their rounds on the calling thread (a thread costs more)

    def _submit(self, fn: Callable[..., Any], *args: Any) -> Future:
        """Run fn on the simulation's worker thread (after the jobs already there), or right here for a
        small fleet: the same results either way, only the time differs."""
        if len(self.fleet) < self.inline_below:
            done: Future = Future()
            try:
                done.set_result(fn(*args))
            except BaseException as e:  # surfaces in settle(), as from the thread
                done.set_exception(e)
            return done
        if self._worker is None or self._worker_pid != os.getpid():  # a forked child has no worker thread
            self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pack-sim")
            self._worker_pid = os.getpid()
        return self._worker.submit(fn, *args)

    @property
    def cbba(self) -> CBBA:
        """The allocation state, once the round in progress has finished and the completions since are in."""
        self.settle()
        return self._cbba

    def settle(self) -> None:
        """Wait for the allocation round in progress, if any (its errors surface here), then hand CBBA the
        completions seen since it started."""
        if self._round is not None:
            round_, self._round = self._round, None
            round_.result()  # its error, if any, surfaces here
        for agent, task in self._completed:
            self._cbba.complete(agent, task)
        self._completed.clear()
        for task in self._withdrawn:
            self._cbba.withdraw(task)
        self._withdrawn.clear()

    def close(self) -> None:
        """Finish the allocation round in progress and stop the worker thread (stepping again restarts it)."""
        try:
            self.settle()
        finally:
            if self._worker is not None:
                self._worker.shutdown(wait=True)
                self._worker = None

