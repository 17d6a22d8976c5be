"""How the worker runs one job: its payload read, a transaction around it, a time limit, its
retries, its log fields and metrics.

- The job runs in a session whose transaction commits when the handler returns and rolls back
  when it raises, like a request.
- It runs for at most its timeout; past it, it is stopped and counts as a failed run.
- A failed run is retried after 1, 2, 4, ... seconds (JOBS__RETRY_*) up to its attempts, then
  held with status `failed`: visible on `/metrics`, in the log, and in
  `python -m app.jobs failed` until someone retries or deletes it (docs/jobs.md).
- When the worker stops and the grace period is over, a job still running is stopped and put
  back in the queue at once, for another worker.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import structlog
from opentelemetry import trace
from pgqueuer import RetryRequested
from pgqueuer.executors import AbstractEntrypointExecutor, EntrypointExecutorParameters
from pgqueuer.models import Context
from pgqueuer.models import Job as QueuedJob
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.jobs.definitions import Job, JobContext
from app.jobs.metrics import JobMetrics
from app.jobs.queue import REQUEST_ID_HEADER
from app.middleware.tracing import log_fields
from app.settings import JobsSettings

log = structlog.get_logger("app.jobs")


class Released(Exception):
    """The worker stopped before the job finished: it goes back to the queue."""


@dataclass(frozen=True, slots=True)
class Backoff:
    initial: float
    cap: float

    def after(self, runs: int) -> timedelta:
        """The wait after the `runs`-th failed run: initial, 2 x initial, 4 x ..., capped."""
        return timedelta(seconds=min(self.initial * 2 ** (runs - 1), self.cap))


@dataclass(frozen=True)
class Stopping:
    """Set by the worker: `draining` once TERM arrived, `released` once the grace is over."""

    draining: asyncio.Event = field(default_factory=asyncio.Event)
    released: asyncio.Event = field(default_factory=asyncio.Event)


async def _pgqueuer_never_calls_this(_: QueuedJob) -> None:  # pragma: no cover
    raise NotImplementedError


class JobRunner(AbstractEntrypointExecutor):
    """pgqueuer's extension point for running an entrypoint's jobs (`executors` module)."""

    def __init__(
        self,
        job: Job[Any],
        settings: JobsSettings,
        sessions: async_sessionmaker[AsyncSession],
        metrics: JobMetrics,
        stopping: Stopping,
    ) -> None:
        # "hold": a job out of attempts stays in the queue table as failed, for people to see.
        super().__init__(
            EntrypointExecutorParameters(
                concurrency_limit=0, func=_pgqueuer_never_calls_this, on_failure="hold"
            )
        )
        self.job = job
        self.timeout = job.timeout_seconds or settings.timeout_seconds
        self.max_attempts = job.max_attempts or settings.max_attempts
        self.backoff = Backoff(settings.retry_initial_seconds, settings.retry_max_seconds)
        self.sessions = sessions
        self.metrics = metrics
        self.stopping = stopping

    async def execute(self, job: QueuedJob, context: Context) -> None:
        run = job.attempts + 1  # pgqueuer counts the runs before this one
        headers = job.headers or {}
        # pgqueuer runs this inside the job's span when tracing is on: its ids go on the lines.
        span = trace.get_current_span().get_span_context()
        with structlog.contextvars.bound_contextvars(
            job_id=job.id,
            job=self.job.name,
            attempt=run,
            request_id=headers.get(REQUEST_ID_HEADER),
            **(log_fields(span) if span.is_valid else {}),
        ):
            await self._run_logged(job, run)

    async def _run_logged(self, job: QueuedJob, run: int) -> None:
        name = self.job.name
        self.metrics.started.labels(name).inc()
        started = time.perf_counter()
        try:
            await self._run_until_released(job, run)
        except Released:
            self.metrics.released.labels(name).inc()
            log.warning("job_released", reason="worker stopping")
            raise RetryRequested(reason="worker stopping") from None
        except Exception as exc:
            self._failed(run, exc)
        else:
            self.metrics.succeeded.labels(name).inc()
            log.info("job_succeeded", duration_ms=round((time.perf_counter() - started) * 1000))
        finally:
            self.metrics.duration.labels(name).observe(time.perf_counter() - started)

    def _failed(self, run: int, exc: Exception) -> None:
        name = self.job.name
        reason = _reason(exc)
        if isinstance(exc, ValidationError) or run >= self.max_attempts:
            self.metrics.failed.labels(name).inc()
            log.error("job_failed", reason=reason, attempts=run, exc_info=exc)
            raise exc
        delay = self.backoff.after(run)
        self.metrics.retried.labels(name).inc()
        log.warning("job_retry", reason=reason, retry_in_s=delay.total_seconds())
        raise RetryRequested(delay=delay, reason=reason) from exc

    async def _run_until_released(self, job: QueuedJob, run: int) -> None:
        running = asyncio.ensure_future(self._run(job, run))
        released = asyncio.ensure_future(self.stopping.released.wait())
        try:
            await asyncio.wait({running, released}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            released.cancel()
        if not running.done():
            running.cancel()
            await asyncio.wait({running})
            raise Released
        running.result()

    async def _run(self, job: QueuedJob, run: int) -> None:
        payload = self.job.payload.model_validate_json(job.payload or b"")
        async with asyncio.timeout(self.timeout), self.sessions() as session, session.begin():
            await self.job.run(payload, JobContext(session=session, job_id=job.id, attempt=run))


def _reason(exc: Exception) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, ValidationError):
        return "payload does not match the job's model"
    return type(exc).__name__
