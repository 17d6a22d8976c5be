"""The key's claim and stored answer on real PostgreSQL: a running request holds its key, an
ended transaction frees it, and only a committed answer is found."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from app.db.engine import build_engine
from app.db.session import write_sessions
from app.idempotency.store import Answer, claim, find, save
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
        assert await claim(first, "alice", "k1")
        async with sessions() as second, second.begin():
            assert not await claim(second, "alice", "k1")
            assert await claim(second, "bob", "k1")  # another caller's key of the same name


async def test_a_rolled_back_claim_frees_the_key_and_leaves_nothing(engine: AsyncEngine) -> None:
    sessions = write_sessions(engine)
    async with sessions() as first, first.begin():
        assert await claim(first, "alice", "k2")
        await save(first, "alice", "k2", fingerprint=b"f", answer=ANSWER, keep=DAY)
        await first.rollback()
    async with sessions() as second, second.begin():
        assert await claim(second, "alice", "k2")
        assert await find(second, "alice", "k2") is None


async def test_a_committed_answer_is_found_until_it_expires(engine: AsyncEngine) -> None:
    sessions = write_sessions(engine)
    async with sessions() as first, first.begin():
        assert await claim(first, "alice", "k3")
        await save(first, "alice", "k3", fingerprint=b"f", answer=ANSWER, keep=DAY)
        await save(first, "alice", "k4", fingerprint=b"f", answer=ANSWER, keep=-DAY)
    async with sessions() as second, second.begin():
        found = await find(second, "alice", "k3")
        assert found is not None
        assert (found.status, found.headers, found.body) == (201, ANSWER.headers, ANSWER.body)
        assert await find(second, "alice", "k4") is None  # expired
