"""Test-only routes on the real service: faults (an exception, sleeps, a blocked loop) and a
small notes table (`tests/notes.py`), for tests that must not depend on the example domain."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, FastAPI
from sqlalchemy import text

from app.auth.dependency import requires
from app.auth.policy import PUBLIC
from app.auth.tokens import Principal
from app.db.session import DbSession
from app.factory import add_routes, create_app
from app.settings import Settings
from tests import (
    jobs,  # jobs-only
    notes,
)

BOOM = "fault-app exploded with internal detail"

# Public on purpose: the fault tests call them without tokens, whatever AUTH__MODE says.
faults = APIRouter(prefix="/_test")


@faults.get("/boom", openapi_extra=PUBLIC)
async def boom() -> None:
    raise RuntimeError(BOOM)


@faults.get("/sleep", openapi_extra=PUBLIC)
async def sleep(seconds: float) -> dict[str, int]:
    await asyncio.sleep(seconds)
    return {"pid": os.getpid()}


@faults.get("/block", openapi_extra=PUBLIC)
async def block(seconds: float) -> None:
    structlog.get_logger("tests.routes").info("event_loop_blocked", seconds=seconds)
    time.sleep(seconds)  # noqa: ASYNC251 - blocks the event loop on purpose (heartbeat test)


@faults.get("/pid", openapi_extra=PUBLIC)
async def pid() -> dict[str, int]:
    return {"pid": os.getpid()}


@faults.get("/backend-pid", openapi_extra=PUBLIC)
async def backend_pid(session: DbSession) -> dict[str, int]:
    return {"pid": int(await session.scalar(text("SELECT pg_backend_pid()")) or 0)}


@faults.get("/db-sleep", openapi_extra=PUBLIC)
async def db_sleep(seconds: float, session: DbSession) -> dict[str, float]:
    await session.execute(text("SELECT pg_sleep(:s)"), {"s": seconds})
    return {"slept": seconds}


private = APIRouter(prefix="/_test/private")


@private.get("")
async def read_private(caller: Annotated[Principal, requires("notes:read")]) -> dict[str, Any]:
    return {"subject": caller.subject, "client_id": caller.client_id}


@private.post("")
async def write_private(caller: Annotated[Principal, requires("notes:write")]) -> dict[str, str]:
    return {"subject": caller.subject}


def service_with_test_routes(settings: Settings | None = None) -> FastAPI:
    app = create_app(settings)
    for router in (faults, notes.router, private):
        add_routes(app, router)
    add_routes(app, jobs.router)  # jobs-only
    return app
