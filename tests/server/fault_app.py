"""The real service plus one route that fails, for server-level tests of the error path.

Served with the real config: `gunicorn -c gunicorn_conf.py tests.server.fault_app:app`.
"""

from __future__ import annotations

from fastapi import APIRouter

from app.factory import create_app

BOOM = "fault-app exploded with internal detail"

faults = APIRouter(prefix="/_test")


@faults.get("/boom")
async def boom() -> None:
    raise RuntimeError(BOOM)


app = create_app()
app.include_router(faults)
