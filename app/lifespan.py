"""Per-worker resources: built when the worker starts serving, released when it stops.

Everything here happens after Gunicorn forks (the app is not preloaded), so each worker gets its
own engine and pool bound to its own event loop. Startup never touches the network: an
unreachable database must not stop the worker (a failed lifespan startup stops the whole Gunicorn
master), it only makes `/ready` answer 503 until the database is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

import structlog
from fastapi import FastAPI
from opentelemetry.sdk.resources import SERVICE_NAME
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine

from app.auth.dependency import STATE_KEY as AUTH_KEY
from app.auth.dependency import Authenticator
from app.auth.lifecycle import authentication
from app.db.budget import PoolBudgetExceeded, check_pool_budget
from app.db.database import Database
from app.db.engine import build_engine, pool_usage
from app.db.failures import is_infrastructure_failure
from app.db.gate import ConnectionGate
from app.db.readiness import ReadinessCheck
from app.db.session import session_makers
from app.jobs.queue import STATE_KEY as JOBS_KEY  # jobs-only
from app.jobs.queue import Producer, producer_tracing  # jobs-only
from app.metrics import BREAKER_STATES, Metrics
from app.middleware import route_templates
from app.otel_variables import traces_endpoint
from app.resilience.circuit_breaker import BreakerConfig, CircuitBreaker
from app.settings import BreakerSettings, Settings
from app.state import Resources, lifespan_state
from app.tracing import STATE_KEY as TRACING_KEY
from app.tracing import Tracing, start_tracing, stop_tracing, traced_engine

log = structlog.get_logger("app.lifespan")


def build_breaker(settings: BreakerSettings) -> CircuitBreaker:
    return CircuitBreaker(
        "database",
        BreakerConfig(
            failure_rate=settings.failure_rate,
            window_size=settings.window_size,
            minimum_calls=settings.minimum_calls,
            open_wait=settings.open_wait,
            half_open_calls=settings.half_open_calls,
            slow_call_s=settings.slow_call_ms / 1000 if settings.slow_call_ms else None,
        ),
        is_failure=is_infrastructure_failure,
    )


async def check_budget(settings: Settings, engine: AsyncEngine) -> None:
    """Log the connection budget (or refuse to start, DB__POOL_BUDGET=refuse)."""
    if settings.db.pgbouncer:
        # max_connections behind PgBouncer is PgBouncer's business (default_pool_size).
        log.info("pool_budget_unchecked", reason="pgbouncer")
        return
    budget = await check_pool_budget(
        engine,
        replicas=settings.server.replicas,
        # gunicorn_conf.py exports the worker count it chose; 1 outside Gunicorn.
        workers=settings.web_concurrency or 1,
        per_worker=settings.db.pool_size + settings.db.max_overflow,
        # jobs-only
        # The job workers: a pool of JOBS__CONCURRENCY and the queue's own connection.
        job_workers=settings.jobs.replicas,
        per_job_worker=settings.jobs.concurrency + 1,
        # /jobs-only
        limit_s=min(2.0, settings.db.connect_timeout),
    )
    if budget is not None and budget.exceeded and settings.db.pool_budget == "refuse":
        await engine.dispose()
        raise PoolBudgetExceeded(
            f"{budget.needed} connections needed, {budget.available} available; lower "
            "DB__POOL_SIZE, WEB_CONCURRENCY or SERVER__REPLICAS (DB__POOL_BUDGET=refuse)"
        )


async def _sample_metrics(
    metrics: Metrics,
    database: Database | None,
    tracing: Tracing | None,
    authenticator: Authenticator | None,
    every: float = 1.0,
) -> None:
    """Once a second: pending request counts to the shared files, pool and breaker gauges."""
    while True:
        _publish(metrics, tracing, authenticator)
        if database is not None:
            usage = pool_usage(database.engine)
            metrics.pool.labels("size").set(usage.size)
            metrics.pool.labels("checked_out").set(usage.checked_out)
            metrics.pool.labels("overflow").set(max(0, usage.overflow))
            metrics.breaker.set(BREAKER_STATES[database.breaker.state.value])
        await asyncio.sleep(every)


def _publish(
    metrics: Metrics, tracing: Tracing | None, authenticator: Authenticator | None
) -> None:
    if tracing is not None:
        counts = tracing.counts
        metrics.spans.count(ended=counts.ended, exported=counts.exported, failed=counts.failed)
    if authenticator is not None:
        verified = authenticator.verified
        metrics.tokens.count(hit=verified.hits, miss=verified.misses)
    metrics.flush()


def build_database(settings: Settings, url: URL) -> Database:
    """One worker's engine, pool, gate and breaker. Opens no connection."""
    db = settings.db
    engine = build_engine(url, db, hide_parameters=settings.is_production)
    return Database(
        engine=engine,
        gate=ConnectionGate(db.pool_size + db.max_overflow, db.pool_timeout),
        breaker=build_breaker(settings.breaker),
        sessions=session_makers(engine),
    )


async def open_database(settings: Settings) -> Database | None:
    """This worker's database, or None when no DATABASE_URL is set. Opens at most the budget
    check's connection (and gives up on it quickly)."""
    url = settings.database_url_object()
    if url is None:
        log.warning("database_not_configured", hint="set DATABASE_URL")
        return None
    database = build_database(settings, url)
    log.info(
        "database_configured",
        url=url.render_as_string(hide_password=True),
        sslmode=str(settings.db.sslmode),
        pool_size=settings.db.pool_size,
        max_overflow=settings.db.max_overflow,
        pgbouncer=settings.db.pgbouncer,
    )
    await check_budget(settings, database.engine)
    return database


def open_tracing() -> Tracing | None:
    """This worker's tracing, or None when OpenTelemetry's variables configure no exporter."""
    endpoint = traces_endpoint(os.environ)
    if endpoint is None:
        return None
    tracing = start_tracing(os.environ)
    log.info(
        "tracing_started",
        collector=urlsplit(endpoint).netloc.rpartition("@")[2],  # never credentials
        service_name=tracing.provider.resource.attributes.get(SERVICE_NAME),
        sampler=tracing.provider.sampler.get_description(),
    )
    return tracing


# jobs-only
def job_producer(metrics: Metrics, tracing: Tracing | None) -> Producer:
    """How this worker enqueues: jobs carry its trace context and are counted on commit."""
    return Producer(
        tracing=producer_tracing(tracing.provider) if tracing is not None else None,
        committed=lambda name: metrics.jobs_enqueued.labels(name).inc(),
    )


# /jobs-only
def make_lifespan(
    settings: Settings, metrics: Metrics
) -> Callable[[FastAPI], AbstractAsyncContextManager[dict[str, Any]]]:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        async with (
            authentication(settings) as authenticator,
            worker_resources(app, settings, metrics, authenticator) as state,
        ):
            yield state | {AUTH_KEY: authenticator}

    return lifespan


@asynccontextmanager
async def worker_resources(
    app: FastAPI, settings: Settings, metrics: Metrics, authenticator: Authenticator | None
) -> AsyncIterator[dict[str, Any]]:
    """Database, tracing, readiness and the metrics sampler, released in reverse."""
    database = await open_database(settings)
    tracing = open_tracing()
    if database is not None and tracing is not None:
        traced = session_makers(traced_engine(tracing, database.engine))
        database = dataclasses.replace(database, traced_sessions=traced)
    readiness = ReadinessCheck(
        database.engine if database else None,
        database.breaker if database else None,
        timeout=settings.probes.ready_timeout,
        cache_ttl=settings.probes.ready_cache_ttl,
        answered=metrics.ready.set,
    )
    sampler = asyncio.create_task(_sample_metrics(metrics, database, tracing, authenticator))
    log.info(
        "app_started",
        database=database is not None,
        tracing=tracing is not None,
        auth=settings.auth_mode,
    )
    try:
        yield lifespan_state(Resources(settings, database, readiness)) | {
            # The routes are final now: every route's template, prefixes included.
            route_templates.STATE_KEY: route_templates.route_templates(app.routes),
            TRACING_KEY: tracing,
            JOBS_KEY: job_producer(metrics, tracing),  # jobs-only
        }
    finally:
        sampler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampler
        if database is not None:
            await database.engine.dispose()
            log.info("database_disposed")
        if tracing is not None:
            await stop_tracing(tracing)  # bounded: FLUSH_TIMEOUT_S
        _publish(metrics, tracing, authenticator)  # what it counted since the last second
