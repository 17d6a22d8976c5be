"""Liveness and readiness probes (Kubernetes semantics, FIELD_NOTES: probes).

`/health` answers from memory only: no database, no pool. A database blip must never make the
kubelet restart every pod. `/ready` asks the cached, time-bounded readiness check.
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from app.state import resources

router = APIRouter(tags=["probes"])


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class ReadyStatus(BaseModel):
    status: Literal["ready", "not ready"]
    reason: str | None = None


@router.get("/health", response_model=Health)
async def health() -> Health:
    return Health()


@router.get(
    "/ready",
    response_model=ReadyStatus,
    responses={503: {"model": ReadyStatus, "description": "Not ready; `reason` says why."}},
)
async def ready(request: Request) -> JSONResponse:
    result = await resources(request).readiness.check()
    if result.ready:
        return JSONResponse({"status": "ready", "reason": None})
    return JSONResponse({"status": "not ready", "reason": result.reason}, status_code=503)
