"""The worker's command line (`python -m app.jobs`; usage in app/jobs/__main__.py)."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from collections.abc import Sequence
from typing import Any

import uvicorn
from pgqueuer import JobId, Queries
from sqlalchemy.engine import URL

from app import domains
from app.jobs.definitions import Job, Schedule
from app.jobs.maintenance import maintenance_schedules
from app.jobs.worker import Worker, connect_queue, create_worker_app
from app.logging import configure_logging
from app.settings import Settings, SettingsError


def main(argv: Sequence[str], settings: Settings) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.jobs")
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("failed", help="list the jobs held as failed")
    retry = commands.add_parser("retry", help="queue failed jobs again")
    retry.add_argument("ids", nargs="+", type=int, metavar="ID")
    arguments = parser.parse_args(argv)
    try:
        url = settings.jobs_database_url_object()
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        return 2
    configure_logging(settings.log, production=settings.is_production)
    if arguments.command == "failed":
        return asyncio.run(_list_failed(settings, url))
    if arguments.command == "retry":
        return asyncio.run(_retry(settings, url, arguments.ids))
    return serve(settings, url, domains.JOBS, domains.SCHEDULES)


def serve(
    settings: Settings, url: URL, jobs: Sequence[Job[Any]], schedules: Sequence[Schedule]
) -> int:
    """Run the worker until TERM: `jobs` and `schedules`, and the queue's own housekeeping."""
    every_schedule = [*schedules, *maintenance_schedules(settings.jobs)]
    app = create_worker_app(Worker(settings, url, jobs, every_schedule))
    # Uvicorn handles TERM and INT while it serves (the lifespan drains the jobs), then raises
    # the signal again for whoever embeds it: here that is the end, and a clean one.
    for stop in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop, _stopped)
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.jobs.port,
        lifespan="on",
        # One process, whatever WEB_CONCURRENCY (read by Uvicorn too) says for the web tier.
        workers=1,
        log_config=None,  # configure_logging did it: the same JSON lines as the web tier
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=1,  # probes and scrapes only; the jobs drain in the lifespan
    )
    return 0


def _stopped(*_: object) -> None:
    pass


async def _list_failed(settings: Settings, url: URL) -> int:
    connection = await connect_queue(settings, url)
    try:
        failed = await Queries.from_asyncpg_connection(connection).list_failed_jobs(limit=1000)
    finally:
        await connection.close()
    for job in failed:
        line = {
            "id": job.id,
            "job": job.entrypoint,
            "attempts": job.attempts,
            "created": job.created.isoformat(),
            "failed_at": job.updated.isoformat(),
            "request_id": (job.headers or {}).get("request_id"),
        }
        print(json.dumps(line))
    return 0


async def _retry(settings: Settings, url: URL, ids: Sequence[int]) -> int:
    connection = await connect_queue(settings, url)
    try:
        await Queries.from_asyncpg_connection(connection).requeue_jobs([JobId(i) for i in ids])
    finally:
        await connection.close()
    return 0
