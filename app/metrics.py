"""Prometheus metrics, summed across Gunicorn workers (prometheus-client multiprocess mode).

Under Gunicorn, `gunicorn_conf.py` creates a fresh `PROMETHEUS_MULTIPROC_DIR` in the master
before any worker starts; every worker writes its values there and `/metrics` merges all of
them, so counts survive worker recycling. Outside Gunicorn (tests, a plain `uvicorn`) values
live in memory. Metric objects are built per app into their own registry, never at import.

Requests are counted in plain dicts and written to the shared files once a second (`flush()`,
called by the lifespan and before every scrape): five locked mmap writes per request cost about
8 % of a small request's CPU here (measured with `make bench`'s CPU column), one batch a second
costs nothing measurable. Counts reach `/metrics` up to a second late.
"""

from __future__ import annotations

import bisect
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

from app.histogram_batch import add_observations

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
UNMATCHED = "unmatched"  # the route label of requests no route matched: bounded cardinality
BREAKER_STATES = {"closed": 0, "half_open": 1, "open": 2}
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, float("inf"))
_BOUNDS = LATENCY_BUCKETS


class Outcomes:
    """A counter by outcome, fed with a component's running totals (`count`) rather than one
    increment per event: the component counts in plain integers, this publishes the
    difference once a second."""

    def __init__(
        self, registry: CollectorRegistry, name: str, documentation: str, outcomes: Iterable[str]
    ) -> None:
        self.counter = Counter(name, documentation, ["outcome"], registry=registry)
        self._counted = dict.fromkeys(outcomes, 0)

    def count(self, **totals: int) -> None:
        for outcome, total in totals.items():
            self.counter.labels(outcome).inc(total - self._counted[outcome])
            self._counted[outcome] = total


class Metrics:
    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry()
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
        self._add_gauges(registry)
        # Sampled spans, when tracing is on: ended minus exported were lost (failed exports,
        # spans dropped from a full queue).
        self.spans = Outcomes(
            registry, "tracing_spans", "Sampled spans by outcome.", ("ended", "exported", "failed")
        )
        # With AUTH__MODE=oidc: bearer tokens answered from the verified-token cache (hit) or
        # checked in full (miss).
        self.tokens = Outcomes(
            registry, "auth_token_cache", "Bearer tokens by cache outcome.", ("hit", "miss")
        )
        # jobs-only
        # Background jobs whose request committed (the worker's own /metrics has the rest).
        self.jobs_enqueued = Counter(
            "jobs_enqueued",
            "Jobs enqueued, counted when their transaction commits.",
            ["job"],
            registry=registry,
        )
        # /jobs-only
        # Pending since the last flush, per (method, route, status): the latency bucket counts
        # (not cumulative, as prometheus-client keeps them) and, in the last slot, their sum.
        # The request count is the buckets' total. One dict update per request.
        self._pending: dict[tuple[str, str, int], list[float]] = {}
        self.in_flight_now = 0

    def _add_gauges(self, registry: CollectorRegistry) -> None:
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
        self.ready = Gauge(
            "service_ready",
            "1 when /ready last answered ready, 0 when not (whichever worker answered); absent "
            "before the first probe.",
            registry=registry,
            multiprocess_mode="livemostrecent",
        )
        self.breaker = Gauge(
            "db_circuit_breaker_state",
            "0 closed, 1 half-open, 2 open (the worst worker).",
            registry=registry,
            multiprocess_mode="livemax",
        )

    def observe(self, method: str, route: str | None, status: int, seconds: float) -> None:
        key = (method, route or UNMATCHED, status)
        pending = self._pending.get(key)
        if pending is None:
            pending = self._pending[key] = [0.0] * (len(_BOUNDS) + 1)
        pending[bisect.bisect_left(_BOUNDS, seconds)] += 1
        pending[-1] += seconds

    def flush(self) -> None:
        pending_all, self._pending = self._pending, {}
        for (method, route, status), pending in pending_all.items():
            buckets = pending[:-1]
            self.requests.labels(method, route, str(status)).inc(sum(buckets))
            add_observations(self.latency.labels(method, route), buckets, pending[-1])
        self.in_flight.set(self.in_flight_now)

    def exposition(self) -> bytes:
        self.flush()
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
