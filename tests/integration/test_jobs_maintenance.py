"""The queue's housekeeping against the real database: history older than the retention goes,
newer stays; expired idempotency keys go too."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.jobs.maintenance import maintenance_schedules, prune_history
from app.settings import Settings
from devtools.pgcluster import PgCluster


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


async def test_the_workers_delete_expired_idempotency_keys_hourly(
    sessions: async_sessionmaker[AsyncSession], migrated: PgCluster, settings: Settings
) -> None:
    [expire] = [s for s in maintenance_schedules(settings.jobs) if s.name.startswith("idem")]
    assert expire.cron == "17 * * * *"
    migrated.psql(
        "INSERT INTO idempotency_keys (scope, key, fingerprint, status, headers, body, expires_at)"
        " VALUES ('anonymous', 'expired', '', 201, '{}', '', now() - interval '1 second'),"
        " ('anonymous', 'kept', '', 201, '{}', '', now() + interval '1 hour')",
        "app",
    )
    async with sessions() as session, session.begin():
        await expire.run(session)
    assert migrated.psql("SELECT key FROM idempotency_keys", "app").split() == ["kept"]
