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
        self.probe_paths = probe_paths
        self.probe_sample_rate = probe_sample_rate
        self._log = structlog.get_logger("app.access")

    def record(self, scope: Scope, status: int, duration_ms: float) -> None:
        slow = duration_ms >= self.slow_request_ms
        if not slow and (
            not self.enabled or (scope["path"] in self.probe_paths and self._skip_probe(status))
        ):
            return
        fields = {
            "method": scope["method"],
            "route": getattr(scope.get("route"), "path", None),
            "path": scope["path"],
            "status": status,
            "duration_ms": round(duration_ms, 2),
        }
        if slow:
            self._log.warning("slow_request", **fields, threshold_ms=self.slow_request_ms)
        if self.enabled:
            client = scope.get("client")
            self._log.info("request", **fields, client=client[0] if client else None)

    def _skip_probe(self, status: int) -> bool:
        if not 0 < status < 400:
            return False
        return self.probe_sample_rate == 0 or random.random() >= self.probe_sample_rate  # noqa: S311 - sampling, not security
