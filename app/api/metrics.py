"""`/metrics` in Prometheus text format, for the allowed client networks only."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from app.errors import NotFound
from app.metrics import CONTENT_TYPE, Metrics, client_allowed


def metrics_router(metrics: Metrics, *, allowed: list[str]) -> APIRouter:
    router = APIRouter()

    @router.get("/metrics", include_in_schema=False)
    async def prometheus(request: Request) -> Response:
        client = request.client.host if request.client else None
        if not client_allowed(client, allowed):
            raise NotFound("Not Found")  # do not advertise it to the wrong network
        return Response(metrics.exposition(), media_type=CONTENT_TYPE)

    return router
