"""The service's Grafana dashboard, built with Grafana's typed builders (grafana-foundation-sdk)
and written as provisioning JSON: `python -m devtools.dashboard` (`make dashboard`) rewrites
deploy/grafana/dashboard.json, which tests hold equal to what this builds.

Every query reads a metric the service serves (tests/server/test_alerting.py checks each one):
rate, errors and duration by route; saturation; breaker and readiness; jobs where the service
has them (a row of its own, last, so a service without jobs drops it whole).
"""

from __future__ import annotations

import json
import sys
import tomllib
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders.dashboard import (
    Dashboard,
    DatasourceVariable,
    QueryVariable,
    Row,
)
from grafana_foundation_sdk.builders.prometheus import Dataquery
from grafana_foundation_sdk.builders.timeseries import Panel as TimeSeries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import DataSourceRef

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "deploy" / "grafana" / "dashboard.json"
SERVICE = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["service"]
# The scrape job of the service's instances, picked on the dashboard (the alerting rules
# aggregate by the same label, docs/alerts.md).
JOB = 'job="$job"'
# Requests a user makes: probes and /metrics aside, as in the SLO rules.
USER = f'{JOB},route!~"/health|/ready|/metrics"'
RATE = "[$__rate_interval]"
PROMETHEUS = DataSourceRef(type_val="prometheus", uid="${datasource}")


def panel(title: str, description: str, unit: str, *queries: tuple[str, str]) -> TimeSeries:
    built = TimeSeries().title(title).description(description).unit(unit).datasource(PROMETHEUS)
    for expr, legend in queries:
        built = built.with_target(Dataquery().expr(expr).legend_format(legend))
    return built.span(12).height(8)


def traffic() -> list[TimeSeries]:
    return [
        panel(
            "Requests by route",
            "Requests a second, by route template (probes and /metrics aside).",
            "reqps",
            (
                f"sum by (route) (rate(http_requests_total{{{USER}}}[$__rate_interval]))",
                "{{route}}",
            ),
        ),
        panel(
            "Errors by route",
            "Share of requests answered 5xx, by route.",
            "percentunit",
            (
                f'sum by (route) (rate(http_requests_total{{{USER},status=~"5.."}}{RATE}))'
                f" / sum by (route) (rate(http_requests_total{{{USER}}}{RATE}))",
                "{{route}}",
            ),
        ),
        panel(
            "Duration by route, p99",
            "99th percentile of the time to the last response byte, by route.",
            "s",
            (
                "histogram_quantile(0.99, sum by (route, le) "
                f"(rate(http_request_duration_seconds_bucket{{{USER}}}[$__rate_interval])))",
                "{{route}}",
            ),
        ),
        panel(
            "Duration by route, p50",
            "Median time to the last response byte, by route.",
            "s",
            (
                "histogram_quantile(0.5, sum by (route, le) "
                f"(rate(http_request_duration_seconds_bucket{{{USER}}}[$__rate_interval])))",
                "{{route}}",
            ),
        ),
    ]


def saturation() -> list[TimeSeries]:
    return [
        panel(
            "Database pool",
            "Pooled connections in use against the pools' size, all instances.",
            "short",
            (f'sum(db_pool_connections{{{JOB},kind="checked_out"}})', "checked out"),
            (f'sum(db_pool_connections{{{JOB},kind="size"}})', "size"),
        ),
        panel(
            "Requests in flight",
            "Requests being handled, by instance.",
            "short",
            (f"sum by (instance) (http_requests_in_flight{{{JOB}}})", "{{instance}}"),
        ),
        panel(
            "Worker exits",
            "Gunicorn workers that exited (recycled, killed, reloaded), by instance.",
            "short",
            (
                f"sum by (instance) (increase(gunicorn_worker_exits_total{{{JOB}}}{RATE}))",
                "{{instance}}",
            ),
        ),
    ]


def health() -> list[TimeSeries]:
    return [
        panel(
            "Database circuit breaker",
            "0 closed, 1 half-open (trying again), 2 open (answering 503 without the database).",
            "short",
            (f"max by (instance) (db_circuit_breaker_state{{{JOB}}})", "{{instance}}"),
        ),
        panel(
            "Ready",
            "1 when the instance's /ready last answered ready, 0 when not.",
            "short",
            (f"min by (instance) (service_ready{{{JOB}}})", "{{instance}}"),
        ),
        panel(
            "Spans lost",
            "Sampled spans a second that ended but were not exported (tracing on).",
            "short",
            (
                f'sum(rate(tracing_spans_total{{{JOB},outcome="ended"}}[$__rate_interval]))'
                f' - sum(rate(tracing_spans_total{{{JOB},outcome="exported"}}[$__rate_interval]))',
                "lost",
            ),
        ),
    ]


# jobs-only
WORKER = 'job="$worker_job"'


def jobs() -> list[TimeSeries]:
    return [
        panel(
            "Jobs by outcome",
            "Job runs a second that succeeded, were retried, or failed their last attempt.",
            "ops",
            (f"sum(rate(jobs_succeeded_total{{{WORKER}}}[$__rate_interval]))", "succeeded"),
            (f"sum(rate(jobs_retried_total{{{WORKER}}}[$__rate_interval]))", "retried"),
            (f"sum(rate(jobs_failed_total{{{WORKER}}}[$__rate_interval]))", "failed"),
        ),
        panel(
            "Oldest due job's wait",
            "How long the oldest job that is due has waited to start, by job name.",
            "s",
            (
                f"max by (exported_job) (jobs_oldest_ready_age_seconds{{{WORKER}}})",
                "{{exported_job}}",
            ),
        ),
        panel(
            "Jobs in the queue",
            "Jobs in the queue table, by state.",
            "short",
            (f"sum by (state) (jobs_in_queue{{{WORKER}}})", "{{state}}"),
        ),
    ]


# /jobs-only
def scrape_job(name: str, label: str, metric: str) -> QueryVariable:
    """A variable listing the scrape jobs that serve `metric`."""
    query = f"label_values({metric}, job)"
    return QueryVariable(name).label(label).datasource(PROMETHEUS).query(query)


def build() -> dict[str, Any]:
    dashboard = (
        Dashboard(SERVICE["name"])
        .uid(SERVICE["slug"])
        .description("Traffic, errors, duration and saturation of the service (docs/alerts.md).")
        .tags(["service"])
        .refresh("30s")
        .time("now-6h", "now")
        .timezone("browser")
        .with_variable(DatasourceVariable("datasource").label("Prometheus").type("prometheus"))
        .with_variable(scrape_job("job", "Service", "http_requests_total"))
        .with_variable(scrape_job("worker_job", "Job worker", "jobs_queue_scrape_ok"))  # jobs-only
    )
    rows = [
        ("Traffic, errors, duration", traffic()),
        ("Saturation", saturation()),
        ("Database and readiness", health()),
        ("Background jobs", jobs()),  # jobs-only
    ]
    for title, panels in rows:
        dashboard = dashboard.with_row(Row(title))
        for built in panels:
            dashboard = dashboard.with_panel(built)
    encoded: dict[str, Any] = json.loads(json.dumps(dashboard.build(), cls=JSONEncoder))
    return encoded


def render() -> str:
    return json.dumps(build(), indent=2, sort_keys=True) + "\n"


def main() -> int:
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text(render())
    print(f"wrote {OUTPUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
