"""The real service plus the test-only routes (`tests/routes.py`), for server-level tests.

Served with the real config: `gunicorn -c gunicorn_conf.py tests.server.fault_app:app`.
"""

from __future__ import annotations

import signal
import sys

from tests.routes import service_with_test_routes

app = service_with_test_routes()

# After its graceful shutdown Uvicorn re-raises the SIGTERM it caught, and the worker, whose
# handler is the default one, dies of it without running exit handlers. Here it exits normally
# instead, so that coverage.py saves what the worker ran (imported in the worker, after the fork).
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
