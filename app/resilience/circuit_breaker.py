"""A circuit breaker with the reference semantics of Hystrix and resilience4j.

- CLOSED: outcomes go into a sliding window of the last `window_size` calls. Once at least
  `minimum_calls` were seen and the share of failures reaches `failure_rate`, it opens.
- OPEN: every call is rejected at once (`CircuitOpen`, with the seconds left) for `open_wait`.
- HALF_OPEN: after the wait, at most `half_open_calls` trial calls run at a time; callers beyond
  that are rejected, not let through. All trials succeeding closes it; any failing reopens it.

Only infrastructure failures count (the caller's `is_failure` decides); other exceptions are
neither failures nor successes. A call that is cancelled (the client went away) does not count
either, and gives its half-open slot back. Optionally a call slower than `slow_call_s` counts as
a failure.

Written by hand (docs/adr/0004-circuit-breaker.md): pybreaker has no asyncio and trips on N
consecutive failures; aiobreaker is unmaintained; purgatory lets every concurrent call through
when half-open and counts cancellations as failures. Framework-free, one per worker process, the
clock injected so tests need no sleeping.
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import structlog

log = structlog.get_logger("app.circuit_breaker")


class State(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True, slots=True)
class BreakerConfig:
    failure_rate: float = 0.5
    window_size: int = 20
    minimum_calls: int = 10
    open_wait: float = 5.0
    half_open_calls: int = 3
    slow_call_s: float | None = None


class CircuitOpen(Exception):
    def __init__(self, name: str, retry_after: float) -> None:
        super().__init__(f"circuit '{name}' is open; retry in {retry_after:.1f} s")
        self.retry_after = retry_after


@dataclass(slots=True)
class Permit:
    """One admitted call; hand it back with `record()` exactly once."""

    trial: bool
    started: float
    generation: int
    done: bool = False


class CircuitBreaker:
    def __init__(
        self,
        name: str,
        config: BreakerConfig,
        *,
        is_failure: Callable[[BaseException], bool],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.config = config
        self._is_failure = is_failure
        self._clock = clock
        self._state = State.CLOSED
        self._window: deque[bool] = deque(maxlen=config.window_size)  # True = failure
        self._opened_at = 0.0
        self._trials_running = 0
        self._trials_passed = 0
        # Bumped on every transition: a trial admitted before it no longer holds a slot.
        self._generation = 0

    @property
    def state(self) -> State:
        return self._state

    def retry_after(self) -> float:
        """Seconds until an open circuit lets a trial through (0 when not open)."""
        if self._state is not State.OPEN:
            return 0.0
        return max(0.0, self.config.open_wait - (self._clock() - self._opened_at))

    def acquire(self) -> Permit:
        """Admit a call or raise `CircuitOpen`. Never awaits: rejecting costs nothing."""
        now = self._clock()
        if self._state is State.OPEN:
            if now - self._opened_at < self.config.open_wait:
                raise CircuitOpen(self.name, self.retry_after())
            self._transition(State.HALF_OPEN, "open wait elapsed; trying again")
        if self._state is State.HALF_OPEN:
            if self._trials_running >= self.config.half_open_calls:
                raise CircuitOpen(self.name, self.config.open_wait)
            self._trials_running += 1
            return Permit(trial=True, started=now, generation=self._generation)
        return Permit(trial=False, started=now, generation=self._generation)

    def record(self, permit: Permit, error: BaseException | None = None) -> None:
        """The outcome of an admitted call: `error` None for success."""
        if permit.done:
            return
        permit.done = True
        current = permit.generation == self._generation
        if permit.trial and current:
            self._trials_running -= 1
        if isinstance(error, asyncio.CancelledError):
            return  # the caller went away: says nothing about the database
        if error is not None and not self._is_failure(error):
            return  # a caller error (not found, conflict, bad data): not counted
        slow = (
            self.config.slow_call_s is not None
            and self._clock() - permit.started > self.config.slow_call_s
        )
        failed = error is not None or slow
        reason = f"{type(error).__name__}" if error is not None else "slow call"
        if permit.trial:
            if current:
                self._record_trial(failed=failed, reason=reason)
        elif self._state is State.CLOSED:
            self._record_closed(failed=failed, reason=reason)

    def _record_trial(self, *, failed: bool, reason: str) -> None:
        if self._state is not State.HALF_OPEN:
            return
        if failed:
            self._open(f"trial call failed ({reason})")
            return
        self._trials_passed += 1
        if self._trials_passed >= self.config.half_open_calls:
            self._window.clear()
            self._transition(State.CLOSED, f"{self._trials_passed} trial calls succeeded")

    def _record_closed(self, *, failed: bool, reason: str) -> None:
        self._window.append(failed)
        calls = len(self._window)
        if calls < self.config.minimum_calls:
            return
        failures = sum(self._window)
        rate = failures / calls
        if failed and rate >= self.config.failure_rate:
            self._open(f"{failures} of the last {calls} calls failed (last: {reason})")

    def _open(self, reason: str) -> None:
        self._opened_at = self._clock()
        self._transition(State.OPEN, reason)

    def _transition(self, state: State, reason: str) -> None:
        previous, self._state = self._state, state
        self._generation += 1
        self._trials_running = 0
        self._trials_passed = 0
        log.log(
            30 if state is State.OPEN else 20,
            "circuit_state_changed",
            circuit=self.name,
            previous=previous.value,
            state=state.value,
            reason=reason,
        )
