"""`docker compose up` as deploy/README.md shows it, with a real engine: the database turns
healthy, the migrations run once, the service turns healthy by its HEALTHCHECK and serves on the
published port; a stop drains a request in flight; the data volume outlives `down` + `up`.

The project name gets a `-test-<run>` suffix (COMPOSE_PROJECT_NAME), so neither a stack a
developer keeps under the service's own name nor another test run's is touched; the port comes
from `PORT`, as in the file.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from devtools.ports import free_port
from tests import run
from tests.containers import Docker
from tests.docs import documented, spawn
from tests.support import (
    HAS_EXAMPLE,  # jobs-only
    ROOT,
    SERVICE,
    needs_example,
    until,
    wait_logged_boots,
)

# Waits for the run's Docker engine, which a new machine prepares in minutes (base images).
pytestmark = [pytest.mark.slow, pytest.mark.docker, pytest.mark.timeout(900)]
UP = documented("deploy/README.md", "docker compose up")
OBSERVABILITY_UP = documented("docs/alerts.md", "docker compose --profile observability up")
# db healthy (2 s checks), migrations, then the app's first HEALTHCHECK after 10 s.
HEALTHY_WITHIN_S = 60


@dataclass
class Stack:
    docker: Docker
    log: Path
    port: int
    env: dict[str, str]
    up_process: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def compose(self, args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return self.docker.run(f"docker compose {args}", timeout=timeout, env=self.env)

    def up(self, command: str = UP) -> None:
        """The documented command, in the foreground as a person runs it (here: a child)."""
        self.up_process = spawn(command, log=self.log, cwd=ROOT, env=self.docker.env | self.env)

    def interrupt(self) -> int:
        """Ctrl-C in the terminal: Compose stops the containers, then exits."""
        assert self.up_process is not None
        if self.up_process.poll() is None:
            os.killpg(self.up_process.pid, signal.SIGINT)
        return self.up_process.wait(timeout=60)

    def services(self) -> dict[str, dict[str, object]]:
        listed = self.compose("ps --all --format json").stdout.splitlines()
        return {entry["Service"]: entry for entry in map(json.loads, filter(None, listed))}

    def wait_healthy(self) -> dict[str, dict[str, object]]:
        """Until the app's HEALTHCHECK passed and every one of its workers finished startup."""
        deadline = time.monotonic() + HEALTHY_WITHIN_S
        while time.monotonic() < deadline:
            found = self.services()
            if found.get("app", {}).get("Health") == "healthy":
                wait_logged_boots(self.app_log, self.workers(), timeout=30)
                return found
            assert self.up_process is not None
            assert self.up_process.poll() is None, self.log.read_text()[-3000:]
            time.sleep(1)
        log = self.log.read_text()[-3000:]
        raise AssertionError(f"not healthy in {HEALTHY_WITHIN_S} s:\n{log}")

    def app_log(self) -> str:
        return self.compose("logs --no-color app").stdout

    def workers(self) -> int:
        """How many workers the app runs: its own report of its configuration."""
        found = re.search(r'\\"workers\\": (\d+)', self.app_log())
        assert found is not None, "no gunicorn_config line in the app's log"
        return int(found.group(1))

    def wait_up_exited(self) -> int:
        assert self.up_process is not None
        return self.up_process.wait(timeout=60)


@pytest.fixture
def stack(docker: Docker, tmp_path: Path) -> Iterator[Stack]:
    port = free_port()
    env = {"COMPOSE_PROJECT_NAME": f"{SERVICE['slug']}-test-{run.tag()}", "PORT": str(port)}
    found = Stack(docker, tmp_path / "compose.log", port, env)
    found.compose("down --volumes --remove-orphans")  # what an interrupted run left
    # `up` builds the image only when it is missing: without this it would serve the image of
    # an earlier run, not the code under test.
    docker.run(f"docker image rm --force {SERVICE['slug']}:local")
    try:
        yield found
    finally:
        if found.up_process is not None:
            found.interrupt()
        found.compose("down --volumes --remove-orphans")


def post_item(stack: Stack, name: str) -> int:
    created = httpx.post(f"{stack.base}/api/v1/items", json={"name": name}, timeout=30)
    assert created.status_code == 201, created.text
    item_id: int = created.json()["id"]
    return item_id


def test_compose_up_migrates_and_serves_on_the_published_port(stack: Stack) -> None:
    stack.up()
    services = stack.wait_healthy()
    assert services["db"]["Health"] == "healthy"
    assert services["migrate"]["State"] == "exited"
    assert services["migrate"]["ExitCode"] == 0
    assert services["app"]["Image"] == f"{SERVICE['slug']}:local"
    assert httpx.get(f"{stack.base}/ready").json()["status"] == "ready"


@needs_example
def test_compose_stop_lets_a_request_in_flight_finish(stack: Stack) -> None:
    stack.up()
    stack.wait_healthy()
    body = json.dumps({"name": "in flight"}).encode()
    head = (
        "POST /api/v1/items HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", stack.port), timeout=30) as client:
        client.sendall(head + body[:4])  # the request is in the server, its body unfinished
        stopping = subprocess.Popen(
            ["bash", "-c", "docker compose stop"],
            cwd=ROOT,
            env=stack.docker.env | stack.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until_stopping(stack)
        client.sendall(body[4:])
        answer = client.recv(65536).decode()
    assert answer.startswith("HTTP/1.1 201"), answer
    assert stopping.wait(timeout=60) == 0
    assert stack.services()["app"]["ExitCode"] == 0
    assert stack.wait_up_exited() in (0, 130)  # the foreground `up` ends with its containers


def wait_until_stopping(stack: Stack) -> None:
    """Until Gunicorn has the TERM and closed its listener. Docker's port proxy still accepts the
    connection, so a closed listener shows as a request without an answer."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{stack.base}/health", timeout=2)
        except httpx.TransportError:
            return
        time.sleep(0.05)
    raise AssertionError("the service kept accepting connections after `docker compose stop`")


@needs_example
def test_the_api_writes_on_the_published_port_and_the_data_survives_down_and_up(
    stack: Stack,
) -> None:
    stack.up()
    stack.wait_healthy()
    item_id = post_item(stack, "kept")
    down = stack.compose("down")
    assert down.returncode == 0, down.stderr
    stack.wait_up_exited()
    stack.up()
    stack.wait_healthy()
    assert httpx.get(f"{stack.base}/api/v1/items/{item_id}").json()["name"] == "kept"


def test_compose_accepts_the_tracing_override_docs_tracing_shows(
    docker: Docker, tmp_path: Path
) -> None:
    """docs/tracing.md's Jaeger override, merged with docker-compose.yml as it says to run it."""
    text = (ROOT / "docs" / "tracing.md").read_text()
    [snippet] = re.findall(r"```yaml\n(.*?)```", text, re.DOTALL)
    override = tmp_path / "compose.tracing.yaml"
    override.write_text(snippet)
    merged = docker.run(f"docker compose -f docker-compose.yml -f {override} config --format json")
    assert merged.returncode == 0, merged.stderr
    services = json.loads(merged.stdout)["services"]
    assert services["app"]["environment"]["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://jaeger:4318"
    assert "jaeger" in services


def test_the_observability_profile_scrapes_every_process_with_the_shipped_rules(
    stack: Stack,
) -> None:
    prometheus = f"http://127.0.0.1:{free_port()}"
    stack.env["PROMETHEUS_PORT"] = prometheus.rsplit(":", 1)[1]
    stack.up(OBSERVABILITY_UP)
    stack.env["COMPOSE_PROFILES"] = "observability"  # so that the teardown's `down` removes it
    stack.wait_healthy()
    jobs = {SERVICE["slug"]}
    jobs.add(f"{SERVICE['slug']}-worker")  # jobs-only
    # A 15 s scrape interval, and the worker's start.
    until(lambda: scraped_up(prometheus) == jobs, f"Prometheus scrapes {sorted(jobs)}", timeout=60)
    shipped = yaml.safe_load((ROOT / "deploy" / "prometheus" / "alerts.yml").read_text())
    loaded = httpx.get(f"{prometheus}/api/v1/rules", timeout=5).json()["data"]["groups"]
    assert {g["name"]: len(g["rules"]) for g in loaded} == {
        g["name"]: len(g["rules"]) for g in shipped["groups"]
    }
    # ...and evaluates them: the objective's recording rule has a value.
    until(lambda: bool(query(prometheus, OBJECTIVE)), "the rules evaluated", timeout=30)
    objective = query(prometheus, OBJECTIVE)
    assert [sample["value"][1] for sample in objective] == ["0.999"]


OBJECTIVE = "slo:availability:objective"


def query(prometheus: str, expression: str) -> list[dict[str, Any]]:
    answer = httpx.get(f"{prometheus}/api/v1/query", params={"query": expression}, timeout=5)
    result: list[dict[str, Any]] = answer.json()["data"]["result"]
    return result


def scraped_up(prometheus: str) -> set[str]:
    """The scrape jobs whose every target Prometheus reached at its last scrape."""
    try:
        targets = httpx.get(f"{prometheus}/api/v1/targets", timeout=5).json()["data"]
    except httpx.HTTPError:
        return set()  # not listening yet
    health: dict[str, set[str]] = {}
    for target in targets["activeTargets"]:
        health.setdefault(target["labels"]["job"], set()).add(target["health"])
    return {job for job, states in health.items() if states == {"up"}}


# jobs-only
def test_the_worker_service_turns_healthy_and_runs_what_the_app_enqueues(stack: Stack) -> None:
    stack.up()
    stack.wait_healthy()
    deadline = time.monotonic() + HEALTHY_WITHIN_S
    while stack.services().get("worker", {}).get("Health") != "healthy":
        assert time.monotonic() < deadline, stack.compose("logs --no-color worker").stdout[-3000:]
        time.sleep(1)
    if not HAS_EXAMPLE:
        return  # nothing of the service's own enqueues yet
    item_id = post_item(stack, "published by the worker")
    deadline = time.monotonic() + 20
    while httpx.get(f"{stack.base}/api/v1/items/{item_id}").json()["published_at"] is None:
        assert time.monotonic() < deadline, stack.compose("logs --no-color worker").stdout[-3000:]
        time.sleep(0.2)
    assert '"job_succeeded"' in stack.compose("logs --no-color worker").stdout


# /jobs-only
