"""The key's claim and stored answer on real PostgreSQL: a running request holds its key, an
ended transaction frees it, and only a committed answer is found."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.db.engine import build_engine
from app.db.session import write_sessions
from app.idempotency.store import Answer, KeyInUse, claim, save
from app.settings import Settings

ANSWER = Answer(201, {"content-type": "application/json"}, b'{"id":1}')
DAY = timedelta(days=1)


@pytest.fixture
async def engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    url = settings.database_url_object()
    assert url is not None
    built = build_engine(url, settings.db, hide_parameters=False)
    try:
        yield built
    finally:
        await built.dispose()


async def test_a_key_held_by_a_running_transaction_cannot_be_claimed(engine: AsyncEngine) -> None:
    sessions = write_sessions(engine)
    async with sessions() as first, first.begin():
        assert await claim(first, "alice", "k1") is None  # held now
        async with sessions() as second, second.begin():
            with pytest.raises(KeyInUse):
                await claim(second, "alice", "k1")
            assert await claim(second, "bob", "k1") is None  # another caller's key of that name


async def test_a_rolled_back_claim_frees_the_key_and_leaves_nothing(engine: AsyncEngine) -> None:
    sessions = write_sessions(engine)
    async with sessions() as first, first.begin():
        assert await claim(first, "alice", "k2") is None
        await save(first, "alice", "k2", fingerprint=b"f", answer=ANSWER, keep=DAY)
        await first.rollback()
    async with sessions() as second, second.begin():
        assert await claim(second, "alice", "k2") is None  # free, and nothing stored


async def test_a_committed_answer_is_found_until_it_expires(engine: AsyncEngine) -> None:
    sessions = write_sessions(engine)
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
    engine: AsyncEngine,
) -> None:
    """Replays of a finished request take no lock: two at once both get the answer."""
    sessions = write_sessions(engine)
    async with sessions() as first, first.begin():
        await claim(first, "alice", "k5")
        await save(first, "alice", "k5", fingerprint=b"f", answer=ANSWER, keep=DAY)
    async with sessions() as one, one.begin(), sessions() as two, two.begin():
        assert await claim(one, "alice", "k5") is not None
        assert await claim(two, "alice", "k5") is not None


async def test_the_claim_sees_an_answer_committed_after_its_first_look(
    engine: AsyncEngine,
) -> None:
    """The race the second look closes: the holder commits after this claim's first look and
    before its lock; the claim must then find the answer, not run the request again."""
    sessions = write_sessions(engine)
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
