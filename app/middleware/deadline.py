"""Request time limits with one timer per 100 ms instead of one per request.

`asyncio.timeout()` schedules and cancels a timer handle for every request; with a single
limit for all requests, deadlines can share buckets: each bucket has one timer that cancels the
tasks still registered in it when it fires. A request may so run up to one bucket (100 ms)
longer than its limit. Written by hand because asyncio has no bucketed timer and the per-request
cost is what a template pays on every call (measured: `make bench`).
"""

from __future__ import annotations

import asyncio

BUCKET_S = 0.1


class Deadlines:
    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._buckets: dict[int, set[asyncio.Task[object]]] = {}
        self._expired: set[asyncio.Task[object]] = set()

    def start(self, task: asyncio.Task[object]) -> int:
        """Register `task` to be cancelled after the timeout; returns its bucket."""
        loop = task.get_loop()
        bucket = int((loop.time() + self.timeout) / BUCKET_S) + 1
        tasks = self._buckets.get(bucket)
        if tasks is None:
            tasks = self._buckets[bucket] = set()
            loop.call_at(bucket * BUCKET_S, self._fire, bucket)
        tasks.add(task)
        return bucket

    def finish(self, task: asyncio.Task[object], bucket: int) -> bool:
        """Unregister `task`; True when its deadline fired (and its cancel is withdrawn)."""
        tasks = self._buckets.get(bucket)
        if tasks is not None:
            tasks.discard(task)
        if task in self._expired:
            self._expired.discard(task)
            task.uncancel()
            return True
        return False

    def expired(self, task: asyncio.Task[object]) -> bool:
        return task in self._expired

    def _fire(self, bucket: int) -> None:
        for task in self._buckets.pop(bucket, ()):
            if not task.done():
                self._expired.add(task)
                task.cancel("request time limit")
