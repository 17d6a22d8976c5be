"""The key's claim and stored answer on real PostgreSQL: a running request holds its key, an
ended transaction frees it, and only a committed answer is found."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.idempotency.store import Answer, KeyInUse, claim, save

ANSWER = Answer(201, {"content-type": "application/json"}, b'{"id":1}')
DAY = timedelta(days=1)


async def test_a_key_held_by_a_running_transaction_cannot_be_claimed(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as first, first.begin():
        assert await claim(first, "alice", "k1") is None  # held now
        async with sessions() as second, second.begin():
            with pytest.raises(KeyInUse):
                await claim(second, "alice", "k1")
            assert await claim(second, "bob", "k1") is None  # another caller's key of that name


async def test_a_rolled_back_claim_frees_the_key_and_leaves_nothing(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as first, first.begin():
        assert await claim(first, "alice", "k2") is None
        await save(first, "alice", "k2", fingerprint=b"f", answer=ANSWER, keep=DAY)
        await first.rollback()
    async with sessions() as second, second.begin():
        assert await claim(second, "alice", "k2") is None  # free, and nothing stored


async def test_a_committed_answer_is_found_until_it_expires(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as first, first.begin():
        assert await claim(first, "alice", "k3") is None
        await save(first, "alice", "k3", fingerprint=b"f", answer=ANSWER, keep=DAY)
        await save(first, "alice", "k4", fingerprint=b"f", answer=ANSWER, keep=-DAY)
    async with sessions() as second, second.begin():
        found = await claim(second, "alice", "k3")
        assert found is not None
        assert (found.fingerprint, found.answer) == (b"f", ANSWER)
        assert await claim(second, "alice", "k4") is None  # expired: the key is new again


async def test_a_finished_answer_is_found_while_another_request_holds_nothing(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """Replays of a finished request take no lock: two at once both get the answer."""
    async with sessions() as first, first.begin():
        await claim(first, "alice", "k5")
        await save(first, "alice", "k5", fingerprint=b"f", answer=ANSWER, keep=DAY)
    async with sessions() as one, one.begin(), sessions() as two, two.begin():
        assert await claim(one, "alice", "k5") is not None
        assert await claim(two, "alice", "k5") is not None


async def test_a_claim_sees_an_answer_committed_after_its_transaction_began(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """A retry whose transaction began while the first request still ran finds its answer, not
    a free key: the claim reads what committed before it, not what its transaction first saw.
    (The function's second look closes the narrower race, between its own two statements,
    which no test can time.)"""
    async with sessions() as holder:
        await holder.begin()
        await claim(holder, "alice", "k6")
        await save(holder, "alice", "k6", fingerprint=b"f", answer=ANSWER, keep=DAY)
        async with sessions() as late, late.begin():
            # Its transaction's snapshot starts before the holder commits (REPEATABLE READ
            # would keep it; READ COMMITTED, the sessions' level, takes one per statement).
            await late.execute(text("SELECT 1"))
            await holder.commit()
            found = await claim(late, "alice", "k6")
            assert found is not None
