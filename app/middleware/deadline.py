"""Request time limits with one shared timer instead of one timer per request.

`asyncio.timeout()` schedules and cancels a timer handle for every request. Every request has
the same limit, so the requests in flight, kept in a dict in arrival order, are also in
deadline order: one timer, running every `TICK_S` while anything is in flight, cancels the
tasks at the front of that dict whose limit has passed and stops at the first one that still
has time. Per request that is one dict insert and one delete. A request may run up to one tick
(100 ms) longer than its limit. Written by hand because asyncio has no shared timer of this
kind and the per-request cost is paid on every call (measured: `make bench`).
"""

from __future__ import annotations

import asyncio
import time

TICK_S = 0.1


class Deadlines:
    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        # Task -> its start (time.perf_counter()), oldest first.
        self._running: dict[asyncio.Task[object], float] = {}
        self._expired: set[asyncio.Task[object]] = set()
        self._timer: asyncio.TimerHandle | None = None

    def start(self, task: asyncio.Task[object], started_at: float) -> None:
        """Cancel `task` once it has run `timeout` seconds since `started_at` (perf_counter)."""
        self._running[task] = started_at
        if self._timer is None:
            self._timer = task.get_loop().call_later(TICK_S, self._tick)

    def finish(self, task: asyncio.Task[object]) -> bool:
        """Stop watching `task`; True when its limit passed (and its cancel is withdrawn)."""
        self._running.pop(task, None)
        if self._expired and task in self._expired:
            self._expired.discard(task)
            task.uncancel()
            return True
        return False

    def expired(self, task: asyncio.Task[object]) -> bool:
        return task in self._expired

    def _tick(self) -> None:
        cutoff = time.perf_counter() - self.timeout
        overdue = []
        for task, started_at in self._running.items():
            if started_at > cutoff:
                break  # everything after it started later
            overdue.append(task)
        for task in overdue:
            del self._running[task]
            if not task.done():
                self._expired.add(task)
                task.cancel("request time limit")
        self._timer = (
            asyncio.get_running_loop().call_later(TICK_S, self._tick) if self._running else None
        )
