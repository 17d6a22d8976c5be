"""A steady, bounded stream of concurrent requests over loopback, every response recorded."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import httpx


@dataclass(frozen=True)
class Hit:
    path: str
    started: float
    elapsed: float
    status: int  # 0: no HTTP answer (connection error or client timeout)
    problem_type: str | None
    fresh: bool = False  # sent on a new connection (else on a kept-alive one)
    error: str | None = None  # with status 0: the client's exception, e.g. ReadTimeout


@dataclass
class Load:
    hits: list[Hit] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def of(self, path: str, since: float = 0.0, until: float = float("inf")) -> list[Hit]:
        with self.lock:
            return [h for h in self.hits if h.path == path and since <= h.started < until]

    def wait_for_more(self, count: int, *, timeout: float = 15) -> None:
        """Return once `count` more requests than now have been answered (or have failed)."""
        target = len(self.hits) + count
        deadline = time.monotonic() + timeout
        while len(self.hits) < target:
            assert time.monotonic() < deadline, f"{target - len(self.hits)} answers missing"
            time.sleep(0.02)


def _worker(
    base_url: str, path: str, pause: float, load: Load, stop: threading.Event, *, fresh: bool
) -> None:
    # fresh: no connection is kept, so every request opens (and the server accepts) a new one.
    limits = httpx.Limits(max_keepalive_connections=0) if fresh else httpx.Limits()
    # A generous timeout: a worker boot on a busy 2-core machine is a wait, not a lost request.
    with httpx.Client(base_url=base_url, timeout=30.0, limits=limits) as client:
        while not stop.is_set():
            started = time.monotonic()
            status, problem_type, error = 0, None, None
            try:
                response = client.get(path)
                status = response.status_code
                if response.headers.get("content-type") == "application/problem+json":
                    problem_type = response.json().get("type")
            except httpx.HTTPError as exc:
                error = type(exc).__name__
            elapsed = time.monotonic() - started
            hit = Hit(path, started, elapsed, status, problem_type, fresh, error)
            with load.lock:
                load.hits.append(hit)
            if pause:
                stop.wait(pause)


@contextmanager
def steady_load(
    base_url: str,
    streams: dict[str, tuple[int, float]],
    *,
    fresh_streams: dict[str, tuple[int, float]] | None = None,
    max_seconds: float = 60,
) -> Iterator[Load]:
    """`streams`: path -> (concurrent clients, pause between requests), over kept-alive
    connections; `fresh_streams` the same with a new connection per request. Stops on exit, or
    after `max_seconds` whatever happens (a bounded load test)."""
    load = Load()
    stop = threading.Event()
    threads = [
        threading.Thread(
            target=_worker,
            args=(base_url, path, pause, load, stop),
            kwargs={"fresh": fresh},
            daemon=True,
        )
        for fresh, group in ((False, streams), (True, fresh_streams or {}))
        for path, (clients, pause) in group.items()
        for _ in range(clients)
    ]
    timer = threading.Timer(max_seconds, stop.set)
    timer.start()
    for thread in threads:
        thread.start()
    try:
        yield load
    finally:
        stop.set()
        timer.cancel()
        for thread in threads:
            thread.join(timeout=15)


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
