"""Batched request metrics: what a flush writes is what observe() saw."""

from __future__ import annotations

import re

from prometheus_client import generate_latest

from app.metrics import Metrics


def value(text: str, sample: str) -> float:
    match = re.search(rf"^{re.escape(sample)} ([0-9.e+]+)$", text, re.M)
    assert match, sample
    return float(match.group(1))


def test_counts_buckets_and_sum_match_the_observations() -> None:
    metrics = Metrics()
    for seconds in (0.001, 0.02, 0.02, 0.3, 12.0):
        metrics.observe("GET", "/x", 200, seconds)
    metrics.observe("GET", None, 404, 0.001)
    text = metrics.exposition().decode()
    assert value(text, 'http_requests_total{method="GET",route="/x",status="200"}') == 5
    assert value(text, 'http_requests_total{method="GET",route="unmatched",status="404"}') == 1
    bucket = 'http_request_duration_seconds_bucket{le="%s",method="GET",route="/x"}'
    assert value(text, bucket % "0.005") == 1
    assert value(text, bucket % "0.025") == 3
    assert value(text, bucket % "0.5") == 4
    assert value(text, bucket % "10.0") == 4
    assert value(text, bucket % "+Inf") == 5
    assert value(text, 'http_request_duration_seconds_count{method="GET",route="/x"}') == 5
    total = value(text, 'http_request_duration_seconds_sum{method="GET",route="/x"}')
    assert abs(total - 12.341) < 1e-9


def test_a_second_flush_adds_only_what_is_new() -> None:
    metrics = Metrics()
    metrics.observe("POST", "/x", 201, 0.01)
    metrics.flush()
    metrics.flush()
    metrics.observe("POST", "/x", 201, 0.01)
    text = metrics.exposition().decode()
    assert value(text, 'http_requests_total{method="POST",route="/x",status="201"}') == 2


def test_a_batch_writes_what_observe_would_have_written() -> None:
    """app/histogram_batch.py reaches into prometheus-client's histogram: if its internals
    change, the exposition of a batch and of the same observations one by one differ."""
    observations = (0.001, 0.02, 0.02, 0.3, 12.0, 0.07)
    batched, direct = Metrics(), Metrics()
    for seconds in observations:
        batched.observe("GET", "/x", 200, seconds)
        direct.latency.labels("GET", "/x").observe(seconds)
    batched.flush()

    def histogram_lines(metrics: Metrics) -> list[str]:
        text = generate_latest(metrics.registry).decode()
        return [
            line
            for line in text.splitlines()
            if "http_request_duration_seconds_" in line and "_created" not in line  # a clock
        ]

    assert histogram_lines(batched) == histogram_lines(direct)
    assert len(histogram_lines(direct)) > len(observations)  # buckets, count, sum
