"""The shipped alerting rules and dashboard against the running service: every metric they
query is one the service serves (a rename fails here), and a real Prometheus (Debian's
package), scraping and evaluating every second with the rules unchanged, fires
`DatabaseCircuitOpen` when PostgreSQL stops under load and resolves it when it is back."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from devtools.pgcluster import PgCluster
from devtools.ports import free_port
from tests import notes, parts
from tests.conftest import running, throwaway_cluster
from tests.otlp import otlp_receiver
from tests.server.load import steady_load
from tests.server.test_database_faults import FAULT_APP
from tests.server.test_gunicorn_signals import wait_workers
from tests.server.test_jobs_worker import worker  # jobs-only
from tests.support import ROOT, Server, db_env, gunicorn, stop, until, wait_for

pytestmark = pytest.mark.slow

RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
# What PromQL itself names, as opposed to metrics.
PROMQL_WORDS = frozenset(
    {
        *("sum", "max", "min", "avg", "count", "by", "without", "on", "ignoring", "bool"),
        *("group_left", "group_right", "and", "or", "unless", "offset", "absent"),
        *("rate", "increase", "irate", "delta", "scalar", "vector", "histogram_quantile"),
        *("sum_over_time", "max_over_time", "min_over_time", "avg_over_time"),
    }
)
EVERY_SECOND = 1.0
BREAKER_FOR_S = 30.0  # the rule's `for:`, read back from the file by the test below
OPEN_WAIT_S = 2.0


def rule_metrics() -> set[str]:
    """The metric names the rules' expressions query (recorded series, named with `:`, aside)."""
    found: set[str] = set()
    for group in yaml.safe_load(RULES.read_text())["groups"]:
        for rule in group["rules"]:
            found |= metric_names(rule["expr"])
    return found


def dashboard_metrics() -> set[str]:
    """The metric names the dashboard's panels query."""
    board = json.loads((ROOT / "deploy" / "grafana" / "dashboard.json").read_text())
    exprs = [t["expr"] for panel in board["panels"] for t in panel.get("targets", [])]
    return set().union(*(metric_names(expr) for expr in exprs))


def metric_names(expr: str) -> set[str]:
    expr = re.sub(r'"[^"]*"', "", expr)
    expr = re.sub(r"\{[^}]*\}|\[[^\]]*\]", "", expr)
    expr = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", expr)
    words = set(re.findall(r"\b[a-zA-Z_:][a-zA-Z0-9_:]*", expr)) - PROMQL_WORDS
    return {word for word in words if ":" not in word}


def served(base_url: str) -> set[str]:
    """The names of the series /metrics serves right now."""
    text = httpx.get(f"{base_url}/metrics").text
    return {re.split(r"[{ ]", line, maxsplit=1)[0] for line in text.splitlines() if line[:1] != "#"}


@pytest.fixture(scope="module")
def cluster() -> Iterator[PgCluster]:
    with throwaway_cluster(migrated=True) as created:
        created.psql("INSERT INTO test_notes (text) VALUES ('scraped')", "app")
        yield created


def test_every_metric_a_rule_or_panel_queries_is_served(cluster: PgCluster, tmp_path: Path) -> None:
    wanted = rule_metrics() | dashboard_metrics()
    assert {"db_circuit_breaker_state", "http_requests_total", "service_ready"} <= rule_metrics()
    assert {"http_request_duration_seconds_bucket", "http_requests_in_flight"} <= wanted
    with otlp_receiver() as receiver:
        env = db_env(running(cluster)) | {
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
            "OTEL_TRACES_SAMPLER": "always_on",
        }
        with gunicorn(env, tmp_path / "gunicorn.log", workers=2, app=FAULT_APP) as server:
            wait_for(f"{server.base_url}/ready")
            assert httpx.get(f"{server.base_url}{notes.PREFIX}/1").status_code == 200
            # A worker exit, for the exit counter: the master replaces it.
            os.kill(min(wait_workers(server, 2)), signal.SIGTERM)
            wait_workers(server, 2)
            found = served_eventually(server, wanted)
    # jobs-only
    with worker(cluster, tmp_path / "worker.log") as job_worker:
        found |= served(job_worker.base_url)
    # /jobs-only
    assert wanted <= found, f"queried, but served by nobody: {sorted(wanted - found)}"


def served_eventually(server: Server, wanted: set[str], timeout: float = 10) -> set[str]:
    """What /metrics serves once the once-a-second samplers and flushes have run, and a worker
    has answered /ready (a worker's readiness goes with it when it exits)."""
    deadline = time.monotonic() + timeout
    while True:
        httpx.get(f"{server.base_url}/ready")
        found = served(server.base_url)
        web = {name for name in wanted if not name.startswith("jobs_")}
        if web <= found or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def prometheus_config(target: str, path: Path) -> Path:
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [{"job_name": "service", "static_configs": [{"targets": [target]}]}],
    }
    path.write_text(yaml.safe_dump(config))
    return path


def alerts(prometheus_url: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = httpx.get(f"{prometheus_url}/api/v1/alerts").json()["data"][
        "alerts"
    ]
    return found


def circuit_alert(prometheus_url: str) -> str | None:
    """The state of DatabaseCircuitOpen: pending, firing, or None (inactive)."""
    states = [
        a["state"]
        for a in alerts(prometheus_url)
        if a["labels"]["alertname"] == "DatabaseCircuitOpen"
    ]
    return states[0] if states else None


def test_the_breaker_alert_fires_with_postgresql_stopped_and_resolves_when_it_is_back(
    cluster: PgCluster, tmp_path: Path
) -> None:
    listen, work = f"127.0.0.1:{free_port()}", tmp_path
    rule = next(
        r
        for g in yaml.safe_load(RULES.read_text())["groups"]
        for r in g["rules"]
        if r.get("alert") == "DatabaseCircuitOpen"
    )
    assert rule["for"] == f"{BREAKER_FOR_S:.0f}s"
    env = db_env(running(cluster)) | {
        "BREAKER__OPEN_WAIT": str(OPEN_WAIT_S),
        "DB__CONNECT_TIMEOUT": "1.0",
        "DB__POOL_TIMEOUT": "1.0",
    }
    with gunicorn(env, work / "gunicorn.log", workers=2, app=FAULT_APP) as server:
        wait_for(f"{server.base_url}/ready")
        config = prometheus_config(f"127.0.0.1:{server.port}", work / "prometheus.yml")
        command = [
            parts.command("prometheus"),
            f"--config.file={config}",
            f"--storage.tsdb.path={work / 'data'}",
            f"--web.listen-address={listen}",
            "--log.level=warn",
        ]
        with (work / "prometheus.log").open("w") as log:
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, text=True)
        url = f"http://{listen}"
        try:
            wait_for(f"{url}/-/ready", timeout=30)
            with steady_load(server.base_url, {f"{notes.PREFIX}/1": (4, 0.05)}, max_seconds=150):
                until(lambda: scraped(url), "Prometheus has scraped the service", timeout=15)
                assert circuit_alert(url) is None
                cluster.stop()
                # The breaker trips on the first failed calls, the service publishes its state
                # once a second, Prometheus scrapes and evaluates once a second.
                took = until(lambda: circuit_alert(url) == "firing", "the alert fires", timeout=60)
                print(f"\nDatabaseCircuitOpen firing {took:.1f} s after PostgreSQL stopped")
                assert took <= BREAKER_FOR_S + 2 * EVERY_SECOND + 2 * EVERY_SECOND
                assert httpx.get(f"{server.base_url}/ready").status_code == 503
                until(lambda: readiness(server) == "0.0", "service_ready is 0", timeout=5)
                cluster.start()
                took = until(lambda: circuit_alert(url) is None, "the alert resolves", timeout=30)
                print(f"resolved {took:.1f} s after PostgreSQL started")
                assert took <= OPEN_WAIT_S + 4 * EVERY_SECOND + 3
                wait_for(f"{server.base_url}/ready")
                until(lambda: readiness(server) == "1.0", "service_ready is 1", timeout=5)
        finally:
            stop(process, grace=10)


def readiness(server: Server) -> str | None:
    """The `service_ready` value /metrics serves (the last /ready answer of any worker)."""
    found = re.search(r"^service_ready (\S+)$", httpx.get(f"{server.base_url}/metrics").text, re.M)
    return found.group(1) if found else None


def scraped(prometheus_url: str) -> bool:
    answer = httpx.get(
        f"{prometheus_url}/api/v1/query",
        params={"query": 'db_circuit_breaker_state{job="service"}'},
    ).json()
    return bool(answer["data"]["result"])
