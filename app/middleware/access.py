"""The access line (one per request) and the slow-request warning."""

from __future__ import annotations

import random

import structlog
from starlette.types import Scope


class AccessLog:
    def __init__(
        self,
        *,
        enabled: bool,
        slow_request_ms: int,
        probe_paths: frozenset[str],
        probe_sample_rate: float,
    ) -> None:
        self.enabled = enabled
        self.slow_request_ms = slow_request_ms
        self._slow_s = slow_request_ms / 1000
        self.probe_paths = probe_paths
        self.probe_sample_rate = probe_sample_rate
        self._log = structlog.get_logger("app.access")

    def record(self, scope: Scope, route: str | None, status: int, seconds: float) -> None:
        """Log the request (`route` is its template, None when no route matched)."""
        slow = seconds >= self._slow_s
        if not slow and (
            not self.enabled or (scope["path"] in self.probe_paths and self._skip_probe(status))
        ):
            return
        fields = {
            "method": scope["method"],
            "route": route,
            "path": scope["path"],
            "status": status,
            "duration_ms": round(seconds * 1000, 2),
        }
        if slow:
            self._log.warning("slow_request", **fields, threshold_ms=self.slow_request_ms)
        if self.enabled:
            client = scope.get("client")
            self._log.info("request", **fields, client=client[0] if client else None)

    def _skip_probe(self, status: int) -> bool:
        """Successful probes are sampled; failing ones are always logged."""
        if not 0 < status < 400:
            return False
        rate = self.probe_sample_rate
        return rate == 0 or random.random() >= rate  # noqa: S311 - sampling, not security
