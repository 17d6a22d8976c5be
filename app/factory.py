"""`create_app(settings)`: builds the service from settings. Importing this does nothing."""

from __future__ import annotations

import os

from fastapi import APIRouter, FastAPI
from starlette.middleware.cors import CORSMiddleware

from app.api import health
from app.api.metrics import metrics_router
from app.api.openapi import install_openapi
from app.domains import ROUTERS
from app.errors import install_error_handlers
from app.lifespan import make_lifespan
from app.logging import configure_logging
from app.metrics import Metrics
from app.middleware.access import AccessLog
from app.middleware.http import HttpMiddleware, security_headers
from app.middleware.tracing import TracingMiddleware
from app.otel_variables import traces_endpoint
from app.settings import SERVICE_NAME, Settings, load_settings

PROBE_PATHS = frozenset({"/health", "/ready"})
# Polled by machines: exempt from the Host allow-list (kubelet and Prometheus use the pod IP)
# and access-logged only when failing or sampled (LOG__PROBE_SAMPLE_RATE).
MACHINE_PATHS = PROBE_PATHS | {"/metrics"}


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings if settings is not None else load_settings()
    configure_logging(settings.log, production=settings.is_production)
    docs = settings.docs_enabled
    metrics = Metrics()
    app = FastAPI(
        title=SERVICE_NAME,
        version="0.1.0",
        debug=False,
        lifespan=make_lifespan(settings, metrics),
        # No interactive docs or schema in production unless asked: they map the attack surface.
        openapi_url="/openapi.json" if docs else None,
        docs_url="/docs" if docs else None,
        redoc_url=None,
    )
    install_error_handlers(app)
    _add_middleware(app, settings, metrics)
    if traces_endpoint(os.environ) is not None:
        # Outermost: the access line and every other log line fall inside the request's span.
        app.add_middleware(TracingMiddleware, untraced_paths=MACHINE_PATHS)
    # Starlette tries routes in order: the probes go first so their cost does not grow with the
    # routes a service adds after them.
    for router in (
        health.router,
        metrics_router(metrics, allowed=settings.http.metrics_allowed_networks),
        *ROUTERS,
    ):
        add_routes(app, router)
    install_openapi(app, no_database=frozenset({"/health"}), secured=settings.auth_mode == "oidc")
    return app


def add_routes(app: FastAPI, router: APIRouter) -> None:
    """Add a domain router's routes to the app itself, instead of `app.include_router()`.

    Since FastAPI 0.137 an included router stays a branch resolved on every request: ~19 us per
    request, 0.85 of the throughput of the same routes added directly (docs/benchmarks.md).
    A router that declares its own prefix, tags and responses can be added as it is.
    `include_router(router, prefix=..., dependencies=[...])` works as well: access logs, metrics
    labels and 405 answers get the prefixed template either way (tests/integration).
    """
    app.router.routes.extend(router.routes)


def _add_middleware(app: FastAPI, settings: Settings, metrics: Metrics) -> None:
    """Pure ASGI middleware only: `HttpMiddleware` (see its docstring for why it is one class),
    and CORS inside it when origins are configured."""
    http = settings.http
    if http.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=http.cors_origins,
            allow_methods=["GET", "POST", "PATCH", "DELETE"],
            allow_headers=["content-type", "x-request-id"],
            expose_headers=["x-request-id"],
        )
    app.add_middleware(
        HttpMiddleware,
        headers=security_headers(hsts_max_age=http.hsts_max_age),
        allowed_hosts=frozenset(host.lower() for host in http.allowed_hosts),
        probe_paths=MACHINE_PATHS,
        metrics=metrics,
        max_body_bytes=http.max_body_bytes,
        timeout=http.request_timeout,
        access_log=AccessLog(
            enabled=settings.log.access,
            slow_request_ms=http.slow_request_ms,
            probe_paths=MACHINE_PATHS,
            probe_sample_rate=settings.log.probe_sample_rate,
        ),
    )
