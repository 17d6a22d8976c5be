"""`python -m tests.jobs_worker`: the worker as `python -m app.jobs` runs it, with the test-only
jobs (tests/jobs.py) next to the domains' own."""

from __future__ import annotations

import os
import sys

from app import domains
from app.jobs.cli import serve
from app.logging import configure_logging
from app.settings import load_settings
from tests import jobs

if __name__ == "__main__":
    settings = load_settings()
    configure_logging(settings.log, production=settings.is_production)
    sys.exit(
        serve(
            settings,
            settings.jobs_database_url_object(),
            [*domains.JOBS, *jobs.JOBS],
            [*domains.SCHEDULES, *([jobs.TICK] if os.environ.get("TEST_JOBS_TICK") else [])],
        )
    )
