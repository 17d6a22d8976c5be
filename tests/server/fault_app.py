"""The real service plus the test-only routes (`tests/routes.py`), for server-level tests.

Served with the real config: `gunicorn -c gunicorn_conf.py tests.server.fault_app:app`.
"""

from __future__ import annotations

from tests.routes import service_with_test_routes

app = service_with_test_routes()
