"""The Gunicorn worker class: `uvicorn_worker.UvicornWorker` plus what it does not pass through.

`uvicorn_worker` maps keepalive, timeout, max_requests, backlog and forwarded_allow_ips, but not
uvicorn's `timeout_graceful_shutdown` (FIELD_NOTES). Without it an overrunning request is cut by
Gunicorn's SIGKILL at `graceful_timeout`, and the lifespan shutdown (engine.dispose()) never
runs; with it set a little lower, uvicorn ends the request itself and shutdown still runs.
"""

from __future__ import annotations

from typing import Any, ClassVar

from uvicorn_worker import UvicornWorker  # type: ignore[import-untyped]  # ships no py.typed

# Seconds kept between uvicorn giving up on in-flight requests and Gunicorn's SIGKILL.
SHUTDOWN_MARGIN = 2


class Worker(UvicornWorker):  # type: ignore[misc]  # base is untyped (Any)
    CONFIG_KWARGS: ClassVar[dict[str, Any]] = {
        "loop": "auto",  # uvloop and httptools from uvicorn[standard]: about twice h11/asyncio
        "http": "auto",
        "server_header": False,  # do not advertise the server and its version
    }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        graceful: float = self.cfg.graceful_timeout
        self.config.timeout_graceful_shutdown = max(1, int(graceful) - SHUTDOWN_MARGIN)
