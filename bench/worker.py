"""`python -m bench.worker`: the worker as `python -m app.jobs` runs it, with the benchmark's
jobs (bench/jobs_app.py) next to the domains' own."""

from __future__ import annotations

import sys

from app import domains
from app.jobs.cli import serve
from app.logging import configure_logging
from app.settings import load_settings
from bench.jobs_app import JOBS

if __name__ == "__main__":
    settings = load_settings()
    configure_logging(settings.log, production=settings.is_production)
    url = settings.jobs_database_url_object()
    sys.exit(serve(settings, url, [*domains.JOBS, *JOBS], domains.SCHEDULES))
