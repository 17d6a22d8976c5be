"""Housekeeping the workers run on a schedule (each once per tick across all replicas).

pgqueuer writes a log row for every state change of every job, and folds them into per-second
statistics rows; neither is ever deleted by pgqueuer itself. Rows older than
JOBS__HISTORY_RETENTION_DAYS are deleted hourly. So are expired idempotency keys.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.idempotency.store import prune_expired
from app.jobs.definitions import Schedule
from app.settings import JobsSettings

_PRUNE_LOG = text("DELETE FROM pgqueuer_log WHERE created < now() - make_interval(days => :days)")
_PRUNE_STATISTICS = text(
    "DELETE FROM pgqueuer_statistics WHERE created < now() - make_interval(days => :days)"
)


async def prune_history(session: AsyncSession, days: int) -> None:
    await session.execute(_PRUNE_LOG, {"days": days})
    await session.execute(_PRUNE_STATISTICS, {"days": days})


def maintenance_schedules(settings: JobsSettings) -> list[Schedule]:
    async def prune(session: AsyncSession) -> None:
        await prune_history(session, settings.history_retention_days)

    async def expire_keys(session: AsyncSession) -> None:
        await prune_expired(session)

    return [
        Schedule("jobs.prune_history", "7 * * * *", prune),
        Schedule("idempotency.prune_expired", "17 * * * *", expire_keys),
    ]
