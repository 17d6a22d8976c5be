"""Prometheus metrics, summed across Gunicorn workers (prometheus-client multiprocess mode).

Under Gunicorn, `gunicorn_conf.py` creates a fresh `PROMETHEUS_MULTIPROC_DIR` in the master
before any worker starts; every worker writes its values there and `/metrics` merges all of
them, so counts survive worker recycling. Outside Gunicorn (tests, a plain `uvicorn`) values
live in memory. Metric objects are built per app into their own registry, never at import.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from ipaddress import ip_address, ip_network

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
UNMATCHED = "unmatched"  # the route label of requests no route matched: bounded cardinality
BREAKER_STATES = {"closed": 0, "half_open": 1, "open": 2}


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        registry = self.registry
        self.requests = Counter(
            "http_requests",
            "HTTP requests answered.",
            ["method", "route", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "http_request_duration_seconds",
            "Time to the last response byte.",
            ["method", "route"],
            registry=registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.in_flight = Gauge(
            "http_requests_in_flight",
            "Requests being handled.",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.pool = Gauge(
            "db_pool_connections",
            "Database pool connections by kind.",
            ["kind"],
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.breaker = Gauge(
            "db_circuit_breaker_state",
            "0 closed, 1 half-open, 2 open (the worst worker).",
            registry=registry,
            multiprocess_mode="livemax",
        )
        # labels() validates and locks on every call; the children are cached instead.
        self._requests: dict[tuple[str, str, int], Counter] = {}
        self._latency: dict[tuple[str, str], Histogram] = {}

    def observe(self, method: str, route: str | None, status: int, seconds: float) -> None:
        route = route or UNMATCHED
        key = (method, route, status)
        counter = self._requests.get(key)
        if counter is None:
            counter = self._requests[key] = self.requests.labels(method, route, str(status))
        counter.inc()
        histogram = self._latency.get((method, route))
        if histogram is None:
            histogram = self._latency[(method, route)] = self.latency.labels(method, route)
        histogram.observe(seconds)

    def exposition(self) -> bytes:
        if os.environ.get(MULTIPROC_ENV):
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return generate_latest(registry)
        return generate_latest(self.registry)


CONTENT_TYPE = CONTENT_TYPE_LATEST


def client_allowed(host: str | None, networks: Iterable[str]) -> bool:
    allowed = list(networks)
    if not allowed:
        return True
    if host is None:
        return False
    try:
        address = ip_address(host)
    except ValueError:
        return False
    return any(address in ip_network(network, strict=False) for network in allowed)
