"""Enqueueing: a job is written in the caller's own transaction, or not at all.

`JobQueue.enqueue(job, payload)` inserts the queue row on the session's connection, inside its
transaction: the job exists if and only if the transaction commits. There is no moment where a
write is saved and its job lost, or where a job runs for a write that was rolled back. A request
gets its queue through the `Jobs` dependency (on the request's `DbSession`); the worker and
scripts build one on any session with `JobQueue(session)`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated, Any

import asyncpg
from fastapi import Depends, Request
from pgqueuer import AsyncpgDriver, Queries
from pgqueuer.adapters.tracing.opentelemetry import OpenTelemetryTracing
from pgqueuer.ports.tracing import TracingProtocol
from pydantic import BaseModel
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from app.db.session import DbSession
from app.jobs.definitions import Job
from app.logging import REQUEST_ID

STATE_KEY = "job_producer"
# Headers a job carries besides its trace context: the request that enqueued it, and its
# payload's version (also in its entrypoint's name; here for people reading the queue table).
REQUEST_ID_HEADER = "request_id"
VERSION_HEADER = "payload_version"


@dataclass(frozen=True, slots=True)
class Producer:
    """What a process that enqueues shares across its queues: the tracing adapter (None when
    tracing is off) and what to call for each job whose transaction committed."""

    tracing: TracingProtocol | None = None
    committed: Callable[[str], None] | None = None


def producer_tracing(provider: Any) -> TracingProtocol:
    """pgqueuer's OpenTelemetry adapter on this process's tracer provider: a job carries the
    current span's context, and the worker continues the trace from it."""
    return OpenTelemetryTracing(tracer=provider.get_tracer("pgqueuer"))


class JobQueue:
    def __init__(self, session: AsyncSession, producer: Producer | None = None) -> None:
        self._session = session
        self._producer = producer or Producer()

    async def enqueue(self, job: Job[Any], payload: BaseModel, *, delay_seconds: float = 0) -> int:
        """Queue `job`, to run once the session's transaction commits and `delay_seconds` have
        passed. Returns the job's id."""
        if not isinstance(payload, job.payload):
            raise TypeError(f"{job.name} takes {job.payload.__name__}, not {type(payload)}")
        connection = await self._transaction_connection()
        queries = Queries(AsyncpgDriver(connection), tracer=self._producer.tracing)
        headers = {VERSION_HEADER: str(job.version)}
        if (request_id := REQUEST_ID.get()) is not None:
            headers[REQUEST_ID_HEADER] = request_id
        [job_id] = await queries.enqueue(
            job.entrypoint,
            payload.model_dump_json().encode(),
            execute_after=timedelta(seconds=delay_seconds) if delay_seconds else None,
            headers=headers,
        )
        if (committed := self._producer.committed) is not None:
            event.listen(
                self._session.sync_session,
                "after_commit",
                _call_with(committed, job.name),
                once=True,
            )
        return int(job_id)

    async def _transaction_connection(self) -> asyncpg.Connection:
        """The session's asyncpg connection, inside the session's transaction."""
        connection = await self._session.connection()
        raw: asyncpg.Connection = (await connection.get_raw_connection()).driver_connection
        if not raw.is_in_transaction():
            # SQLAlchemy's asyncpg dialect sends BEGIN with the first statement it runs.
            await connection.execute(text("SELECT 1"))
        return raw


def _call_with(committed: Callable[[str], None], name: str) -> Callable[[Session], None]:
    return lambda _: committed(name)


async def _job_queue(request: Request, session: DbSession) -> JobQueue:
    producer: Producer = getattr(request.state, STATE_KEY)
    return JobQueue(session, producer)


# The request's queue: jobs enqueued here commit or roll back with the request's writes.
Jobs = Annotated[JobQueue, Depends(_job_queue)]
