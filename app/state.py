"""Typed access to what the lifespan built for this worker process."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from app.db import database
from app.db.database import Database
from app.db.readiness import ReadinessCheck
from app.settings import Settings

_KEY = "resources"


@dataclass(frozen=True, slots=True)
class Resources:
    settings: Settings
    database_or_none: Database | None
    readiness: ReadinessCheck


def resources(request: Request) -> Resources:
    found: Resources = getattr(request.state, _KEY)
    return found


def lifespan_state(found: Resources) -> dict[str, object]:
    """What the lifespan yields; Starlette copies it into every request's `request.state`.
    The database layer finds its own parts under its own keys (app/db/database.py)."""
    return {
        _KEY: found,
        database.STATE_KEY: found.database_or_none,
    }
