"""The connection budget: replicas x workers x (pool_size + max_overflow), plus the job
workers' connections, against what the server allows non-superusers (max_connections -
superuser_reserved_connections).

Each Gunicorn worker has its own pool (docs/facts.md: database pool); the sum is easy to get
wrong when a deployment scales workers or replicas, and the symptom ("too many clients") shows
up only under load. Checked once per worker at startup, from the server's own settings.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import structlog
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

log = structlog.get_logger("app.db.budget")


@dataclass(frozen=True, slots=True)
class Budget:
    needed: int
    available: int

    @property
    def exceeded(self) -> bool:
        return self.needed > self.available


class PoolBudgetExceeded(RuntimeError):
    pass


async def check_pool_budget(
    engine: AsyncEngine,
    *,
    replicas: int,
    workers: int,
    per_worker: int,
    job_workers: int = 0,
    per_job_worker: int = 0,
    limit_s: float,
) -> Budget | None:
    """Compare; None when the server could not be asked (never blocks startup on it)."""
    try:
        async with asyncio.timeout(limit_s), engine.connect() as connection:
            max_connections = int(await connection.scalar(text("SHOW max_connections")) or 0)
            reserved = int(
                await connection.scalar(text("SHOW superuser_reserved_connections")) or 0
            )
    except Exception as exc:
        log.info("pool_budget_unchecked", reason=type(exc).__name__)
        return None
    needed = replicas * workers * per_worker + job_workers * per_job_worker
    budget = Budget(needed=needed, available=max_connections - reserved)
    fields = {
        "replicas": replicas,
        "workers": workers,
        "per_worker": per_worker,
        "job_workers": job_workers,
        "per_job_worker": per_job_worker,
        "needed": budget.needed,
        "max_connections": max_connections,
        "superuser_reserved_connections": reserved,
        "available": budget.available,
    }
    if budget.exceeded:
        log.warning("pool_budget_exceeded", **fields)
    else:
        log.info("pool_budget_ok", **fields)
    return budget
