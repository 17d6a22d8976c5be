"""The circuit breaker's state machine, driven by a fake clock (no sleeping)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from app.resilience import circuit_breaker
from app.resilience.circuit_breaker import (
    BreakerConfig,
    CircuitBreaker,
    CircuitOpen,
    Permit,
    State,
)


class Infra(Exception):
    """Stands for an infrastructure failure (the classifier is the breaker's input)."""


class CallerError(Exception):
    """Stands for a 404/409/422-like error that must never count."""


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(clock: Clock, **config: float | int | None) -> CircuitBreaker:
    defaults: dict[str, float | int | None] = {
        "failure_rate": 0.5,
        "window_size": 10,
        "minimum_calls": 4,
        "open_wait": 5.0,
        "half_open_calls": 2,
    }
    return CircuitBreaker(
        "db",
        BreakerConfig(**(defaults | config)),  # type: ignore[arg-type]
        is_failure=lambda exc: isinstance(exc, Infra),
        clock=clock,
    )


def state_of(breaker: CircuitBreaker) -> State:
    """A call, so mypy does not carry one assertion's narrowing over to the next."""
    return breaker.state


def call(breaker: CircuitBreaker, error: BaseException | None = None) -> None:
    breaker.record(breaker.acquire(), error)


def half_open(**config: float | int | None) -> tuple[Clock, CircuitBreaker]:
    """A breaker that tripped and whose open wait (5 s) is over: the next call is a trial."""
    clock = Clock()
    breaker = make(clock, **config)
    trip(breaker)
    clock.now += 5.0
    return clock, breaker


def trip(breaker: CircuitBreaker) -> None:
    for _ in range(breaker.config.minimum_calls):
        call(breaker, Infra())
    assert state_of(breaker) is State.OPEN


def test_does_not_open_before_the_minimum_number_of_calls() -> None:
    breaker = make(Clock())
    for _ in range(3):
        call(breaker, Infra())
    assert state_of(breaker) is State.CLOSED
    call(breaker, Infra())
    assert state_of(breaker) is State.OPEN


def test_opens_on_the_failure_rate_not_on_consecutive_failures() -> None:
    breaker = make(Clock(), minimum_calls=4, failure_rate=0.5)
    for error in (None, Infra(), None, None, Infra()):  # 2 of 5 = 40 %
        call(breaker, error)
    assert state_of(breaker) is State.CLOSED
    call(breaker, Infra())  # 3 of 6 = 50 %
    assert state_of(breaker) is State.OPEN


def test_the_window_slides_so_old_failures_age_out() -> None:
    breaker = make(Clock(), window_size=4, minimum_calls=4, failure_rate=0.75)
    for error in (Infra(), Infra(), None, None, None, None, Infra(), Infra()):
        call(breaker, error)
    assert state_of(breaker) is State.CLOSED  # the window holds None, None, Infra, Infra: 50 %


def test_the_window_slides_so_old_successes_do_not_dilute_new_failures() -> None:
    """Over all 102 calls the rate is 2 %; over the last four, 50 %: only the window counts."""
    breaker = make(Clock(), window_size=4, minimum_calls=4, failure_rate=0.5)
    for _ in range(100):
        call(breaker, None)
    call(breaker, Infra())
    assert state_of(breaker) is State.CLOSED
    call(breaker, Infra())
    assert state_of(breaker) is State.OPEN


def test_open_rejects_without_calling_until_the_wait_is_over() -> None:
    clock = Clock()
    breaker = make(clock)
    trip(breaker)
    clock.now += 4.0
    with pytest.raises(CircuitOpen) as rejected:
        breaker.acquire()
    assert rejected.value.retry_after == pytest.approx(1.0)
    clock.now += 1.0
    permit = breaker.acquire()
    assert permit.trial
    assert state_of(breaker) is State.HALF_OPEN


def test_half_open_admits_exactly_n_concurrent_trials_then_closes_when_all_pass() -> None:
    _clock, breaker = half_open(half_open_calls=2)
    first, second = breaker.acquire(), breaker.acquire()
    for _ in range(5):  # everyone else is rejected while the trials run
        with pytest.raises(CircuitOpen):
            breaker.acquire()
    breaker.record(first)
    assert state_of(breaker) is State.HALF_OPEN
    breaker.record(second)
    assert state_of(breaker) is State.CLOSED
    assert not breaker.acquire().trial


def test_a_failing_trial_reopens_for_another_full_wait() -> None:
    clock = Clock()
    breaker = make(clock)
    trip(breaker)
    clock.now += 5.0
    breaker.record(breaker.acquire(), Infra())
    assert state_of(breaker) is State.OPEN
    clock.now += 4.9
    with pytest.raises(CircuitOpen):
        breaker.acquire()


def test_caller_errors_never_count() -> None:
    breaker = make(Clock())
    for _ in range(50):
        call(breaker, CallerError())
    assert state_of(breaker) is State.CLOSED


def test_a_caller_error_in_a_trial_frees_the_slot_without_closing() -> None:
    _clock, breaker = half_open(half_open_calls=1)
    breaker.record(breaker.acquire(), CallerError())
    assert state_of(breaker) is State.HALF_OPEN
    breaker.record(breaker.acquire())  # the slot was given back
    assert state_of(breaker) is State.CLOSED


def test_cancelled_calls_neither_count_nor_leak_a_trial_slot() -> None:
    clock = Clock()
    breaker = make(clock, half_open_calls=1)
    for _ in range(20):
        call(breaker, asyncio.CancelledError())
    assert state_of(breaker) is State.CLOSED
    trip(breaker)
    clock.now += 5.0
    breaker.record(breaker.acquire(), asyncio.CancelledError())
    trial = breaker.acquire()  # not rejected: the cancelled trial gave its slot back
    breaker.record(trial)
    assert state_of(breaker) is State.CLOSED


def test_slow_successful_calls_count_as_failures_when_configured() -> None:
    clock = Clock()
    breaker = make(clock, slow_call_s=1.0)
    for _ in range(4):
        permit = breaker.acquire()
        clock.now += 1.5
        breaker.record(permit)
    assert state_of(breaker) is State.OPEN


def test_recording_twice_counts_once() -> None:
    """Counted twice, one failure would reach the minimum of two calls at 100 % and open."""
    breaker = make(Clock(), minimum_calls=2, failure_rate=1.0)
    permit: Permit = breaker.acquire()
    breaker.record(permit, Infra())
    breaker.record(permit, Infra())
    assert state_of(breaker) is State.CLOSED
    call(breaker, Infra())  # a second call of its own does count
    assert state_of(breaker) is State.OPEN


def test_a_trial_from_before_a_reopen_does_not_free_a_new_slot() -> None:
    clock, breaker = half_open(half_open_calls=1)
    stale = breaker.acquire()
    breaker.record(stale, Infra())  # reopens
    clock.now += 5.0
    fresh = breaker.acquire()
    with pytest.raises(CircuitOpen):
        breaker.acquire()
    breaker.record(fresh)
    assert state_of(breaker) is State.CLOSED


def test_a_trial_admitted_before_a_reopen_neither_frees_a_slot_nor_closes() -> None:
    clock, breaker = half_open(half_open_calls=2)
    stale, failing = breaker.acquire(), breaker.acquire()
    breaker.record(failing, Infra())  # reopens while `stale` is still running
    clock.now += 5.0
    first = breaker.acquire()
    second = breaker.acquire()
    breaker.record(stale)  # finishes late: neither a slot nor a vote in this half-open round
    with pytest.raises(CircuitOpen):
        breaker.acquire()
    breaker.record(first)
    assert state_of(breaker) is State.HALF_OPEN
    breaker.record(second)
    assert state_of(breaker) is State.CLOSED


def test_a_finished_trial_frees_exactly_one_slot() -> None:
    _clock, breaker = half_open(half_open_calls=2, minimum_calls=4)
    first, _running = breaker.acquire(), breaker.acquire()
    breaker.record(first, CallerError())  # neither passes nor fails: only the slot comes back
    breaker.acquire()
    with pytest.raises(CircuitOpen):
        breaker.acquire()


def test_retry_after_counts_down_the_open_wait_and_is_zero_otherwise() -> None:
    clock = Clock()
    breaker = make(clock, open_wait=5.0)
    assert breaker.retry_after() == 0.0
    trip(breaker)
    assert breaker.retry_after() == 5.0
    clock.now += 2.0
    assert breaker.retry_after() == 3.0
    with pytest.raises(CircuitOpen) as rejected:
        breaker.acquire()
    assert rejected.value.retry_after == 3.0
    assert str(rejected.value) == "circuit 'db' is open; retry in 3.0 s"
    clock.now += 4.0
    assert breaker.retry_after() == 0.0  # over, though no call has moved it to half-open yet
    breaker.acquire()
    assert breaker.retry_after() == 0.0


def test_a_call_exactly_as_long_as_the_slow_call_limit_is_not_slow() -> None:
    clock = Clock()
    breaker = make(clock, slow_call_s=1.0, minimum_calls=2, failure_rate=0.5)
    for _ in range(4):
        permit = breaker.acquire()
        clock.now += 1.0
        breaker.record(permit)
    assert state_of(breaker) is State.CLOSED


class Recorder:
    """Stands in for the module's logger: what the breaker logs, as (level, event, fields)."""

    def __init__(self) -> None:
        self.lines: list[tuple[int, str, dict[str, object]]] = []

    def log(self, level: int, event: str, **fields: object) -> None:
        self.lines.append((level, event, fields))


def test_every_state_change_is_logged_once_with_its_reason(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    recorder = Recorder()
    monkeypatch.setattr(circuit_breaker, "log", recorder)
    clock = Clock()
    breaker = make(clock, half_open_calls=1, minimum_calls=2)
    call(breaker, Infra())
    call(breaker, Infra())
    clock.now += 5.0
    call(breaker, Infra())  # the trial fails
    clock.now += 5.0
    call(breaker)
    changes = [
        ("closed", "open", "2 of the last 2 calls failed (last: Infra)"),
        ("open", "half_open", "open wait elapsed; trying again"),
        ("half_open", "open", "trial call failed (Infra)"),
        ("open", "half_open", "open wait elapsed; trying again"),
        ("half_open", "closed", "1 trial calls succeeded"),
    ]
    assert recorder.lines == [
        (
            logging.WARNING if state == "open" else logging.INFO,
            "circuit_state_changed",
            {"circuit": "db", "previous": previous, "state": state, "reason": reason},
        )
        for previous, state, reason in changes
    ]


def test_a_slow_call_that_trips_the_circuit_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    recorder = Recorder()
    monkeypatch.setattr(circuit_breaker, "log", recorder)
    clock = Clock()
    breaker = make(clock, slow_call_s=1.0, minimum_calls=1, failure_rate=1.0)
    permit = breaker.acquire()
    clock.now += 2.0
    breaker.record(permit)
    assert recorder.lines[-1][2]["reason"] == "1 of the last 1 calls failed (last: slow call)"


def test_a_slow_trial_reopens_and_extra_callers_wait_a_full_open_wait() -> None:
    clock, breaker = half_open(half_open_calls=1, slow_call_s=1.0)
    trial = breaker.acquire()
    with pytest.raises(CircuitOpen) as rejected:  # the one trial slot is taken
        breaker.acquire()
    assert str(rejected.value) == "circuit 'db' is open; retry in 5.0 s"
    clock.now += 1.5
    breaker.record(trial)  # succeeded, but too slowly
    assert state_of(breaker) is State.OPEN
