"""The service's domains: the routers `create_app` adds, the models Alembic compares, the jobs
and schedules the worker runs.

A new domain is two lines here (README: Adding a domain); nothing else outside its own package
knows it exists.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any  # jobs-only

from fastapi import APIRouter

from app.items import jobs as items_jobs  # jobs-only
from app.items import models as items_models
from app.items import router as items_router
from app.jobs.definitions import Job, Schedule  # jobs-only

ROUTERS: list[APIRouter] = [
    items_router.router,
]
# Imported for their tables on `Base.metadata`: Alembic's autogenerate and the tests read it.
MODELS: list[ModuleType] = [
    items_models,
]
# jobs-only
# The jobs the worker runs (app/jobs/definitions.py), and the schedules (cron) it keeps.
JOBS: list[Job[Any]] = [
    *items_jobs.JOBS,
]
SCHEDULES: list[Schedule] = []
# /jobs-only
