"""The service's domains: the routers `create_app` adds, the models Alembic compares.

A new domain is two lines here (README: Adding a domain); nothing else outside its own package
knows it exists.
"""

from __future__ import annotations

from types import ModuleType

from fastapi import APIRouter

from app.items import models as items_models
from app.items import router as items_router

ROUTERS: list[APIRouter] = [
    items_router.router,
]
# Imported for their tables on `Base.metadata`: Alembic's autogenerate and the tests read it.
MODELS: list[ModuleType] = [
    items_models,
]
