"""`/metrics` in Prometheus text format, for the allowed client networks only."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from app.auth.policy import PUBLIC
from app.errors import NotFound
from app.metrics import CONTENT_TYPE, Metrics, client_allowed


def metrics_router(metrics: Metrics, *, allowed: list[str]) -> APIRouter:
    router = APIRouter()

    # Limited by network (HTTP__METRICS_ALLOWED_NETWORKS), not by token: scrapers send none.
    @router.get("/metrics", include_in_schema=False, openapi_extra=PUBLIC)
    async def prometheus(request: Request) -> Response:
        client = request.client.host if request.client else None
        if not client_allowed(client, allowed):
            raise NotFound("Not Found")  # do not advertise it to the wrong network
        return Response(metrics.exposition(), media_type=CONTENT_TYPE)

    return router
