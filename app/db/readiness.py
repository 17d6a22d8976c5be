"""The readiness check: a cheap, time-bounded, cached and single-flight database ping.

Kubelet probes every pod every few seconds, and a load balancer may probe too. Without a cache
and a single flight, a slow database gets one extra query per probe per worker exactly when it
can least afford it (docs/facts.md: probes).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.resilience.circuit_breaker import CircuitBreaker, CircuitOpen, State

log = structlog.get_logger("app.readiness")


@dataclass(frozen=True, slots=True)
class Readiness:
    ready: bool
    reason: str | None = None


class ReadinessCheck:
    def __init__(
        self,
        engine: AsyncEngine | None,
        breaker: CircuitBreaker | None,
        *,
        timeout: float,
        cache_ttl: float,
        clock: Callable[[], float] = time.monotonic,
        answered: Callable[[bool], None] = lambda _: None,
    ) -> None:
        self._engine = engine
        self._answered = answered  # each answer /ready gives (the `service_ready` gauge)
        self._breaker = breaker
        self._timeout = timeout
        self._cache_ttl = cache_ttl
        self._clock = clock
        self._last: Readiness | None = None
        self._last_at = 0.0
        self._inflight: asyncio.Future[Readiness] | None = None
        self._last_error: str | None = None
        self._pings: set[asyncio.Future[None]] = set()

    async def check(self) -> Readiness:
        found = await self._check()
        self._answered(found.ready)
        return found

    async def _check(self) -> Readiness:
        if self._breaker is not None and self._breaker.state is State.OPEN:
            # Traffic already showed the database failing: say so now, not after the cache.
            retry = self._breaker.retry_after()
            if retry > 0:
                return Readiness(ready=False, reason=f"database circuit open ({retry:.0f} s)")
        if self._last is not None and self._clock() - self._last_at < self._cache_ttl:
            return self._last
        if self._inflight is None:
            self._inflight = asyncio.ensure_future(self._probe())
            self._inflight.add_done_callback(self._store)
        # shield: a probe whose client hangs up must not cancel the check other probes wait on.
        return await asyncio.shield(self._inflight)

    def _store(self, future: asyncio.Future[Readiness]) -> None:
        self._inflight = None
        if future.cancelled() or future.exception() is not None:
            return
        result = future.result()
        if self._last is None or result.ready != self._last.ready:
            # Logged on change only: probes arrive every few seconds.
            log.log(
                20 if result.ready else 30,
                "readiness_changed",
                ready=result.ready,
                reason=result.reason,
                error=self._last_error,
            )
        self._last = result
        self._last_at = self._clock()

    async def _probe(self) -> Readiness:
        if self._engine is None or self._breaker is None:
            return Readiness(ready=False, reason="database not configured")
        # The ping is a call like any other: an open circuit answers without touching the
        # database, and once its wait is over the ping serves as a trial call, so a pod that
        # gets no traffic while out of rotation still finds out that the database is back.
        try:
            permit = self._breaker.acquire()
        except CircuitOpen as exc:
            self._last_error = str(exc)
            return Readiness(ready=False, reason=f"database circuit open ({exc.retry_after:.0f} s)")
        error: BaseException | None = None
        try:
            await self._bounded_ping(self._engine)
        except TimeoutError as exc:
            error = exc
            self._last_error = f"no answer within {self._timeout} s"
            return Readiness(ready=False, reason="database check timed out")
        except Exception as exc:
            error = exc
            # The full message (a TLS verification failure, say) goes to the log, not the probe.
            self._last_error = f"{type(exc).__name__}: {exc}"
            return Readiness(ready=False, reason=f"database unavailable ({type(exc).__name__})")
        except BaseException as exc:
            error = exc  # cancelled: recorded as such (not counted), then passed on
            raise
        finally:
            self._breaker.record(permit, error)
        self._last_error = None
        return Readiness(ready=True)

    async def _bounded_ping(self, engine: AsyncEngine) -> None:
        """`SELECT 1`, given up after the timeout. The ping runs as its own task because a
        cancelled query's connection is then closed gracefully, and SQLAlchemy's asyncpg adapter
        allows that close 2 s: on a dead network the probe would wait that long too."""
        ping = asyncio.ensure_future(_select_one(engine))
        self._pings.add(ping)  # the event loop keeps only a weak reference to a task
        ping.add_done_callback(self._pings.discard)
        try:
            done, _ = await asyncio.wait({ping}, timeout=self._timeout)
        finally:
            ping.cancel()  # no-op once done; else its cleanup goes on in the background
        if not done:
            raise TimeoutError
        ping.result()


async def _select_one(engine: AsyncEngine) -> None:
    async with engine.connect() as connection:
        await connection.execute(text("SELECT 1"))
