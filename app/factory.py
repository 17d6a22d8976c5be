"""`create_app(settings)`: builds the service from settings. Importing this does nothing."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI

from app.api import health
from app.errors import install_error_handlers
from app.items import router as items
from app.lifespan import make_lifespan
from app.logging import configure_logging
from app.middleware.errors import UnhandledErrorMiddleware
from app.settings import Settings, load_settings


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings if settings is not None else load_settings()
    configure_logging(settings.log, production=settings.is_production)
    app = FastAPI(
        title="app",
        version="0.1.0",
        debug=False,
        lifespan=make_lifespan(settings),
        # No interactive docs or schema in production: they map the attack surface.
        openapi_url=None if settings.is_production else "/openapi.json",
        docs_url=None if settings.is_production else "/docs",
        redoc_url=None,
    )
    install_error_handlers(app)
    # Added first, so it sits innermost of our middleware (each add wraps the previous ones).
    app.add_middleware(UnhandledErrorMiddleware)
    app.include_router(health.router)
    api = APIRouter(prefix="/api/v1")
    api.include_router(items.router)
    app.include_router(api)
    return app
