"""What a job is: a name, a payload model with a version, and the function that runs it.

A domain declares its jobs in its own `jobs.py` and lists them in `app/domains.py`. The queue
entry's name carries the payload's version (`orders.confirm.v1`): a worker runs only the versions
it declares, so during a rolling deploy an old worker never takes a job whose payload it cannot
read. To change a payload incompatibly, declare `version=2` next to version 1 and delete version
1 once no such job is queued (docs/jobs.md).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

Payload = TypeVar("Payload", bound=BaseModel)


@dataclass(frozen=True, slots=True)
class JobContext:
    """What a running job gets besides its payload: a session whose transaction commits when the
    job returns (and rolls back when it raises), and where it is in its retries."""

    session: AsyncSession
    job_id: int
    attempt: int


Handler = Callable[[Payload, JobContext], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Job(Generic[Payload]):
    name: str
    payload: type[Payload]
    run: Handler[Payload]
    version: int = 1
    # None: JOBS__TIMEOUT_SECONDS.
    timeout_seconds: float | None = None
    # None: JOBS__MAX_ATTEMPTS.
    max_attempts: int | None = None

    @property
    def entrypoint(self) -> str:
        return f"{self.name}.v{self.version}"


@dataclass(frozen=True, slots=True)
class Schedule:
    """Work that runs on a cron schedule, once per tick across every worker replica (the
    schedule's state is a row in PostgreSQL). It gets a session that commits when it returns."""

    name: str
    cron: str
    run: Callable[[AsyncSession], Awaitable[None]]
