"""Liveness and readiness probes (Kubernetes semantics, docs/facts.md: probes).

`/health` answers from memory only: no database, no pool. A database blip must never make the
kubelet restart every pod. `/ready` asks the cached, time-bounded readiness check.
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel

from app.auth.policy import PUBLIC
from app.db.engine import pool_usage
from app.errors import ServiceUnavailable
from app.state import resources

router = APIRouter(tags=["probes"])


class NotReady(ServiceUnavailable):
    slug = "not-ready"

    def __init__(self, reason: str) -> None:
        # Probes retry on their own schedule; Retry-After is for other clients.
        super().__init__(reason, retry_after=1)


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class PoolStatus(BaseModel):
    size: int
    checked_out: int
    overflow: int


class ReadyStatus(BaseModel):
    status: Literal["ready"] = "ready"
    # This worker's pool, for operators (and the fault tests: nothing leaked after a fault).
    pool: PoolStatus | None = None


# Probes answer anyone: the kubelet and load balancers send no token.
@router.get("/health", response_model=Health, openapi_extra=PUBLIC)
async def health() -> Health:
    return Health()


@router.get(
    "/ready",
    responses={503: {"description": "Not ready; `detail` says why."}},
    openapi_extra=PUBLIC,
)
async def ready(request: Request) -> ReadyStatus:
    result = await resources(request).readiness.check()
    if not result.ready:
        raise NotReady(result.reason or "not ready")
    found = resources(request)
    if found.database_or_none is None:
        return ReadyStatus()
    usage = pool_usage(found.database_or_none.engine)
    return ReadyStatus(
        pool=PoolStatus(size=usage.size, checked_out=usage.checked_out, overflow=usage.overflow)
    )
