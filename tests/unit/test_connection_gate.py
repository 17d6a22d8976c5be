"""The connection gate: first come, first served; a bounded wait; no slot lost or gained."""

from __future__ import annotations

import asyncio
import time

import pytest

from app.db.gate import ConnectionGate, PoolBusy


async def request(gate: ConnectionGate, name: str, admitted: list[str]) -> None:
    await gate.acquire()
    admitted.append(name)
    gate.release()


async def arrive(gate: ConnectionGate, name: str, admitted: list[str]) -> asyncio.Task[None]:
    """A request that has arrived: it runs up to its wait before this returns."""
    task = asyncio.create_task(request(gate, name, admitted))
    await asyncio.sleep(0)
    return task


async def test_waiting_requests_are_admitted_in_arrival_order() -> None:
    gate = ConnectionGate(size=1, timeout=5)
    await gate.acquire()
    admitted: list[str] = []
    names = [f"request {number}" for number in range(6)]
    tasks = [await arrive(gate, name, admitted) for name in names]
    assert admitted == []  # the slot is taken: all of them wait
    gate.release()
    await asyncio.gather(*tasks)
    assert admitted == names


async def test_a_newcomer_does_not_overtake_a_waiting_request() -> None:
    """A slot freed while someone waits goes to the waiter, even when a newcomer asks before the
    waiter has run (the unfairness of the pool this gate stands in front of)."""
    gate = ConnectionGate(size=1, timeout=5)
    await gate.acquire()
    admitted: list[str] = []
    waiter = await arrive(gate, "waiter", admitted)
    gate.release()
    await request(gate, "newcomer", admitted)  # asks at once, before the waiter wakes
    await waiter
    assert admitted == ["waiter", "newcomer"]


async def test_a_wait_longer_than_the_pool_timeout_is_refused_in_time() -> None:
    gate = ConnectionGate(size=1, timeout=0.2)
    await gate.acquire()
    began = time.monotonic()
    with pytest.raises(PoolBusy) as refused:
        await gate.acquire()
    waited = time.monotonic() - began
    assert 0.2 <= waited < 0.2 + 0.5  # the timeout, plus scheduling on a loaded machine
    assert refused.value.headers == {"Retry-After": "1"}
    assert refused.value.status == 503


async def test_refused_and_cancelled_waits_leave_the_slots_as_they_were() -> None:
    gate = ConnectionGate(size=2, timeout=0.05)
    await gate.acquire()
    await gate.acquire()
    with pytest.raises(PoolBusy):
        await gate.acquire()
    cancelled = asyncio.create_task(gate.acquire())
    await asyncio.sleep(0)
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    gate.release()
    gate.release()
    # Exactly two slots again: two are taken at once, a third waits.
    await asyncio.wait_for(gate.acquire(), 0.01)
    await asyncio.wait_for(gate.acquire(), 0.01)
    with pytest.raises(PoolBusy):
        await gate.acquire()
