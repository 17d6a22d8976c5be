"""The worker process: runs the queued jobs and the schedules, serves `/health` and `/metrics`.

`python -m app.jobs` (Procfile `worker:`) serves this app with Uvicorn on `JOBS__PORT`; the jobs
run in its lifespan. TERM (or Ctrl-C) stops taking jobs, lets the running ones finish for
`JOBS__GRACE_SECONDS`, puts back the ones still running, and exits 0.

The queue connection is a direct one (`JOBS__DATABASE_URL`, else `DATABASE_URL`), never through
PgBouncer's transaction mode: the worker waits for new jobs with LISTEN, which that mode drops.
When the database goes away the worker keeps running and reconnects every
`JOBS__RECONNECT_SECONDS`; jobs it was running are picked again once their heartbeat is stale.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import asyncpg
import pgqueuer
import structlog
from pgqueuer import PgQueuer
from pgqueuer.models import Schedule as QueuedSchedule
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from app.db.engine import build_engine, connect_args
from app.db.session import write_sessions
from app.jobs.definitions import Job, Schedule
from app.jobs.metrics import JobMetrics
from app.jobs.queue import producer_tracing
from app.jobs.runner import JobRunner, Stopping
from app.lifespan import check_budget, open_tracing
from app.settings import Settings
from app.tracing import Tracing, stop_tracing, traced_engine

log = structlog.get_logger("app.jobs")
SCRAPE_TIMEOUT_S = 2.0


@dataclass
class Worker:
    settings: Settings
    url: URL
    jobs: Sequence[Job[Any]]
    schedules: Sequence[Schedule]
    metrics: JobMetrics = field(default_factory=JobMetrics)
    stopping: Stopping = field(default_factory=Stopping)
    shutdown: asyncio.Event = field(default_factory=asyncio.Event)
    # Built by `running()`, in the lifespan.
    engine: AsyncEngine | None = None
    sessions: async_sessionmaker[AsyncSession] | None = None
    tracing: Tracing | None = None
    loop: asyncio.Task[None] | None = None

    @property
    def names(self) -> dict[str, str]:
        return {job.entrypoint: job.name for job in self.jobs}

    @property
    def alive(self) -> bool:
        return self.loop is not None and not self.loop.done()

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        settings = self.settings
        db = settings.db.model_copy(
            update={"pool_size": settings.jobs.concurrency, "max_overflow": 0, "pgbouncer": False}
        )
        self.engine = build_engine(self.url, db, hide_parameters=settings.is_production)
        self.tracing = open_tracing()
        traced = traced_engine(self.tracing, self.engine) if self.tracing else self.engine
        self.sessions = write_sessions(traced)
        await check_budget(settings, self.engine)
        self.metrics.declare(sorted(set(self.names.values())))
        self.loop = asyncio.create_task(self._run_queue())
        log.info("worker_started", jobs=sorted(self.names), schedules=self._schedule_names())
        if longer := self._longer_than_grace():
            log.warning("jobs_longer_than_grace", jobs=longer, grace_s=settings.jobs.grace_seconds)
        try:
            yield
        finally:
            await self._drain()
            await self.engine.dispose()
            if self.tracing is not None:
                await stop_tracing(self.tracing)
            log.info("worker_stopped")

    def _longer_than_grace(self) -> list[str]:
        """Jobs whose timeout exceeds the grace period: a TERM may stop them midway."""
        jobs = self.settings.jobs
        return sorted(
            job.entrypoint
            for job in self.jobs
            if (job.timeout_seconds or jobs.timeout_seconds) > jobs.grace_seconds
        )

    def _schedule_names(self) -> list[str]:
        return [schedule.name for schedule in self.schedules]

    async def _run_queue(self) -> None:
        jobs = self.settings.jobs
        await pgqueuer.run(
            self._connected,
            shutdown=self.shutdown,  # signals are Uvicorn's: it stops this through the lifespan
            restart_on_failure=True,
            restart_delay=timedelta(seconds=jobs.reconnect_seconds),
            dequeue_timeout=timedelta(seconds=jobs.poll_seconds),
            heartbeat_timeout=timedelta(seconds=jobs.heartbeat_timeout_seconds),
            # At most this many jobs at once; pgqueuer wants it to be twice its batch.
            max_concurrent_tasks=jobs.concurrency,
            batch_size=max(1, jobs.concurrency // 2),
        )

    async def _drain(self) -> None:
        """Stop taking jobs; give the running ones the grace period; then put them back."""
        assert self.loop is not None  # noqa: S101 - set before the lifespan yields
        grace = self.settings.jobs.grace_seconds
        log.info("worker_draining", grace_s=grace)
        self.stopping.draining.set()
        self.shutdown.set()
        done, _ = await asyncio.wait({self.loop}, timeout=grace)
        if not done:
            self.stopping.released.set()
            # Putting a job back is one statement; past this its stale heartbeat does it.
            done, _ = await asyncio.wait({self.loop}, timeout=self.settings.db.command_timeout)
        if not done:
            log.warning("worker_stopped_with_jobs_running")
            self.loop.cancel()
            await asyncio.wait({self.loop})

    @asynccontextmanager
    async def _connected(self) -> AsyncIterator[PgQueuer]:
        """One connection to the queue, with every job and schedule registered on it; pgqueuer
        builds a new one after a failure (`restart_on_failure`)."""
        connection = await self._connect()
        log.info("worker_connected")
        try:
            queue = PgQueuer.from_asyncpg_connection(connection)
            if self.tracing is not None:
                queue.qm.tracer = producer_tracing(self.tracing.provider)
            assert self.sessions is not None  # noqa: S101 - built before the loop starts
            for job in self.jobs:
                runner = JobRunner(
                    job, self.settings.jobs, self.sessions, self.metrics, self.stopping
                )
                queue.qm.register_executor(job.entrypoint, runner)
            for schedule in self.schedules:
                queue.schedule(schedule.name, schedule.cron)(_scheduled(schedule, self.sessions))
            yield queue
        finally:
            with contextlib.suppress(Exception):
                await connection.close(timeout=self.settings.db.command_timeout)

    async def _connect(self) -> asyncpg.Connection:
        return await connect_queue(self.settings, self.url)


async def connect_queue(settings: Settings, url: URL) -> asyncpg.Connection:
    """A direct asyncpg connection with the service's TLS and timeouts."""
    dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
    args = connect_args(settings.db.model_copy(update={"pgbouncer": False}))
    connection: asyncpg.Connection = await asyncpg.connect(dsn, **args)
    return connection


def _scheduled(
    schedule: Schedule, sessions: async_sessionmaker[AsyncSession]
) -> Callable[[QueuedSchedule], Awaitable[None]]:
    async def run(_: QueuedSchedule) -> None:
        with structlog.contextvars.bound_contextvars(schedule=schedule.name):
            async with sessions() as session, session.begin():
                await schedule.run(session)
            log.info("schedule_ran")

    return run


def create_worker_app(worker: Worker) -> Starlette:
    async def health(_: Request) -> Response:
        # Liveness: the job loop runs. A database outage is no reason to restart the process.
        alive = worker.alive
        return JSONResponse({"status": "ok" if alive else "stopped"}, 200 if alive else 503)

    async def metrics(_: Request) -> Response:
        if worker.engine is not None:
            try:
                async with asyncio.timeout(SCRAPE_TIMEOUT_S):
                    await worker.metrics.read_queue(worker.engine, worker.names)
            except Exception as exc:  # the job counters are worth answering with anyway
                log.warning("queue_unreadable", reason=type(exc).__name__)
        return Response(generate_latest(worker.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        async with worker.running():
            yield

    return Starlette(
        routes=[Route("/health", health), Route("/metrics", metrics)], lifespan=lifespan
    )
