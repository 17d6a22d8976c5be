"""The queue's housekeeping and the example's job, each against the real database: history
older than the retention goes, newer stays; running the example's job twice changes nothing
more than running it once."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.db.engine import build_engine
from app.db.session import write_sessions
from app.jobs.definitions import JobContext
from app.jobs.maintenance import prune_history
from app.settings import Settings
from devtools.pgcluster import PgCluster
from tests.support import HAS_EXAMPLE


@pytest.fixture
async def sessions(settings: Settings) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    url = settings.database_url_object()
    assert url is not None
    engine = build_engine(url, settings.db, hide_parameters=False)
    try:
        yield write_sessions(engine)
    finally:
        await engine.dispose()


def history(cluster: PgCluster, table: str) -> list[str]:
    rows = cluster.psql(f"SELECT entrypoint FROM {table} ORDER BY id", "app")  # noqa: S608 - ours
    return rows.split()


async def test_history_past_the_retention_is_deleted_and_the_rest_kept(
    sessions: async_sessionmaker[AsyncSession], migrated: PgCluster
) -> None:
    for table, extra in (("pgqueuer_log", "job_id, "), ("pgqueuer_statistics", "count, ")):
        value = "1, " if extra else ""
        migrated.psql(
            f"INSERT INTO {table} ({extra}created, status, priority, entrypoint) VALUES"  # noqa: S608
            f" ({value}now() - interval '8 days', 'successful', 0, 'old'),"
            f" ({value}now() - interval '6 days', 'successful', 0, 'recent')",
            "app",
        )
    async with sessions() as session, session.begin():
        await prune_history(session, days=7)
    assert history(migrated, "pgqueuer_log") == ["recent"]
    assert history(migrated, "pgqueuer_statistics") == ["recent"]


@pytest.mark.skipif(not HAS_EXAMPLE, reason="the example domain was left out")
async def test_publishing_an_item_twice_changes_nothing_the_second_time(
    sessions: async_sessionmaker[AsyncSession], migrated: PgCluster
) -> None:
    from app.items.jobs import PUBLISH, PublishItem  # noqa: PLC0415 - the example's own

    migrated.psql("INSERT INTO items (name) VALUES ('twice')", "app")
    payload = PublishItem(item_id=1)
    for attempt in (1, 2):
        async with sessions() as session, session.begin():
            await PUBLISH.run(payload, JobContext(session=session, job_id=1, attempt=attempt))
        if attempt == 1:
            first = migrated.psql("SELECT published_at, updated_at FROM items", "app")
            assert first.split("|")[0]  # published
    assert migrated.psql("SELECT published_at, updated_at FROM items", "app") == first
