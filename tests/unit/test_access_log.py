"""Access and slow-request lines: what is logged, what probes may skip."""

from __future__ import annotations

from typing import Any

import pytest
from structlog.testing import capture_logs

from app.middleware.access import AccessLog

PROBES = frozenset({"/health", "/ready"})


def scope(path: str) -> dict[str, Any]:
    return {"type": "http", "method": "GET", "path": path, "client": ("10.0.0.9", 5123)}


def events(settings: dict[str, Any], path: str, status: int, duration_ms: float) -> list[str]:
    # Built inside capture_logs: structlog caches a logger on its first use.
    with capture_logs() as logs:
        AccessLog(**settings, probe_paths=PROBES).record(
            scope(path), path, status, duration_ms / 1000
        )
    return [entry["event"] for entry in logs]


def test_ordinary_request_gets_one_access_line_with_its_fields() -> None:
    with capture_logs() as logs:
        access = AccessLog(
            enabled=True, slow_request_ms=500, probe_paths=PROBES, probe_sample_rate=0
        )
        access.record(scope("/api/v1/items"), "/api/v1/items", 201, 0.012345)
    assert logs == [
        {
            "event": "request",
            "log_level": "info",
            "method": "GET",
            "route": "/api/v1/items",
            "path": "/api/v1/items",
            "status": 201,
            "duration_ms": 12.35,
            "client": "10.0.0.9",
        }
    ]


@pytest.mark.parametrize(
    ("rate", "status", "duration", "expected"),
    [
        (0.0, 200, 1, []),  # silenced by default
        (1.0, 200, 1, ["request"]),  # sampled at 100 %
        (0.0, 503, 1, ["request"]),  # a failing probe is always logged
        (0.0, 200, 900, ["slow_request", "request"]),  # so is a slow one
    ],
)
def test_probe_lines_follow_the_sample_rate_except_failures(
    rate: float, status: int, duration: float, expected: list[str]
) -> None:
    settings = {"enabled": True, "slow_request_ms": 500, "probe_sample_rate": rate}
    assert events(settings, "/ready", status, duration) == expected


def test_disabled_access_log_still_warns_about_slow_requests() -> None:
    settings = {"enabled": False, "slow_request_ms": 500, "probe_sample_rate": 0}
    assert events(settings, "/api/v1/items", 200, 10) == []
    assert events(settings, "/api/v1/items", 200, 501) == ["slow_request"]
