"""`create_app(settings)`: builds the service from settings. Importing this does nothing."""

from __future__ import annotations

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

from app.api import health
from app.api.openapi import install_openapi
from app.errors import install_error_handlers
from app.items import router as items
from app.lifespan import make_lifespan
from app.logging import configure_logging
from app.middleware.errors import UnhandledErrorMiddleware
from app.middleware.limits import RequestLimitsMiddleware
from app.middleware.request_context import RequestContextMiddleware, security_headers
from app.settings import Settings, load_settings

PROBE_PATHS = frozenset({"/health", "/ready"})


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings if settings is not None else load_settings()
    configure_logging(settings.log, production=settings.is_production)
    docs = settings.docs_enabled
    app = FastAPI(
        title="app",
        version="0.1.0",
        debug=False,
        lifespan=make_lifespan(settings),
        # No interactive docs or schema in production unless asked: they map the attack surface.
        openapi_url="/openapi.json" if docs else None,
        docs_url="/docs" if docs else None,
        redoc_url=None,
    )
    install_error_handlers(app)
    _add_middleware(app, settings)
    app.include_router(health.router)
    app.include_router(items.router)
    install_openapi(app, no_database=frozenset({"/health"}))
    return app


def _add_middleware(app: FastAPI, settings: Settings) -> None:
    """Pure ASGI middleware only. Each `add_middleware` wraps the ones added before it, so the
    first added is innermost: errors -> limits -> CORS -> request context (outermost)."""
    http = settings.http
    app.add_middleware(UnhandledErrorMiddleware)
    app.add_middleware(
        RequestLimitsMiddleware,
        allowed_hosts=frozenset(http.allowed_hosts),
        exempt_paths=PROBE_PATHS,
        max_body_bytes=http.max_body_bytes,
        timeout=http.request_timeout,
    )
    if http.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=http.cors_origins,
            allow_methods=["GET", "POST", "PATCH", "DELETE"],
            allow_headers=["content-type", "x-request-id"],
            expose_headers=["x-request-id"],
        )
    app.add_middleware(
        RequestContextMiddleware,
        headers=security_headers(hsts_max_age=http.hsts_max_age),
        access=settings.log.access,
        slow_request_ms=http.slow_request_ms,
        probe_paths=PROBE_PATHS,
        probe_sample_rate=settings.log.probe_sample_rate,
    )
