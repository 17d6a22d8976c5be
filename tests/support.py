"""Helpers shared by the tests: settings for the throwaway database, real Gunicorn processes."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import tomllib
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from alembic import command
from alembic.config import Config
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from app.settings import Settings
from devtools.pgcluster import PgCluster
from devtools.ports import free_port

ROOT = Path(__file__).resolve().parent.parent
# This service's identity as the template declared it: tests name things through it, so a
# generated service's tests hold whatever its name.
SERVICE = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["service"]
# Variables a developer's shell might carry that would change what a test means.
_OWN_PREFIXES = (
    "APP_",
    "DB__",
    "PROBES__",
    "SERVER__",
    "LOG__",
    "HTTP__",
    "BREAKER__",
    "OTEL_",
    "AUTH__",
)
_OWN_NAMES = {"DATABASE_URL", "DATABASE_URL_FILE", "SECRETS_DIR", "PORT", "HOST", "WEB_CONCURRENCY"}
# Set when the tests run under `make test`; a nested make would then announce its directory.
_MAKE_NAMES = {"MAKEFLAGS", "MAKELEVEL", "MFLAGS"}


# The example domain, which a generated service may leave out (cookiecutter's include_example).
HAS_EXAMPLE = (ROOT / "app" / "items").is_dir()
needs_example = pytest.mark.skipif(
    not HAS_EXAMPLE,
    reason="uses the example domain's API (app/items), which this service was generated without",
)


def missing_tables(cluster: PgCluster, database: str, tables: Iterable[str]) -> list[str]:
    """Those of `tables` that `database` does not have."""
    return [
        table
        for table in tables
        if cluster.psql(f"SELECT to_regclass('{table}') IS NOT NULL", database).strip() != "t"
    ]


def requests_counted(metrics_text: str, route: str, status: int = 200) -> float:
    """`http_requests_total` for GET `route` with `status` in a /metrics exposition."""
    pattern = (
        rf'^http_requests_total{{method="GET",route="{re.escape(route)}",status="{status}"}} '
        r"([0-9.e+]+)$"
    )
    match = re.search(pattern, metrics_text, re.M)
    return float(match.group(1)) if match else 0.0


def wait_metric(base_url: str, pattern: str, *, timeout: float = 5.0) -> str:
    """/metrics once a line matches `pattern` (workers write their counts once a second)."""
    deadline = time.monotonic() + timeout
    while not re.search(pattern, text := httpx.get(f"{base_url}/metrics").text, re.M):
        assert time.monotonic() < deadline, f"no /metrics line matches {pattern!r}"
        time.sleep(0.1)
    return text


def port_is_free(port: int) -> bool:
    """Nothing listens on the loopback `port` (a stopped server left no process behind)."""
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def db_env(cluster: PgCluster, database: str = "app") -> dict[str, str]:
    """Environment that points the service at `cluster` over verify-full TLS."""
    return {
        "DATABASE_URL": cluster.url(database),
        "DB__SSLMODE": "verify-full",
        "DB__SSLROOTCERT": str(cluster.ca_file),
    }


def make_settings(cluster: PgCluster | None, database: str = "app", **overrides: Any) -> Settings:
    values: dict[str, Any] = {"app_env": "test", "_env_file": None}
    db: dict[str, Any] = {}
    if cluster is not None:
        values["database_url"] = cluster.url(database)
        db = {"sslmode": "verify-full", "sslrootcert": cluster.ca_file}
    values["db"] = db | overrides.pop("db", {})
    values.update(overrides)
    return Settings(**values)


def migrate(settings: Settings) -> None:
    config = Config(toml_file=str(ROOT / "pyproject.toml"))
    config.attributes["settings"] = settings
    command.upgrade(config, "head")


def clean_env(**extra: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in _OWN_NAMES | _MAKE_NAMES and not key.startswith(_OWN_PREFIXES)
    }
    env.update(extra)
    return env


# Set by coverage.py (`patch = ["subprocess"]`) so that every Python process the tests start
# is measured: the service's own servers, not the tools they run.
COVERAGE = "COVERAGE_PROCESS_CONFIG"


def unmeasured(env: dict[str, str]) -> dict[str, str]:
    """`env` for a process that coverage.py must not trace: another project's code (a generated
    service, its tools) or a benchmark, which tracing would slow several times over."""
    return {key: value for key, value in env.items() if key != COVERAGE}


def state_per_request(app: ASGIApp) -> ASGIApp:
    """`app` getting a copy of the lifespan state per request, as the ASGI spec asks of servers
    and Uvicorn does; asgi-lifespan hands every request the one shared dict, where a value one
    request puts in `request.state` would reach the next."""

    async def copying(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan" and "state" in scope:
            scope = {**scope, "state": dict(scope["state"])}
        await app(scope, receive, send)

    return copying


@asynccontextmanager
async def asgi_client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """The whole app in-process, lifespan included (httpx's transport alone skips it)."""
    async with (
        LifespanManager(state_per_request(app)) as manager,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=manager.app), base_url="http://testserver"
        ) as client,
    ):
        yield client


@dataclass
class Server:
    process: subprocess.Popen[str]
    port: int
    log_path: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.log_path.read_text()

    def events(self) -> list[dict[str, Any]]:
        """The JSON log lines so far (run it with LOG__FORMAT=json); other lines are skipped."""
        events = []
        for line in self.output().splitlines():
            with contextlib.suppress(ValueError):
                events.append(json.loads(line))
        return events


def until(
    condition: Callable[[], bool], what: str, *, timeout: float = 10, every: float = 0.2
) -> float:
    """Polls `condition` every `every` s until it holds, and returns how long that took; fails
    naming `what` after `timeout` s."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < timeout, f"not within {timeout} s: {what}"
        time.sleep(every)
    return time.monotonic() - started


def wait_for(
    url: str, *, status: int = 200, timeout: float = 20.0, consecutive: int = 1
) -> httpx.Response:
    """Poll until `url` answers `status` `consecutive` times in a row (workers cache apart)."""
    deadline = time.monotonic() + timeout
    last: str = "no answer"
    streak = 0
    while time.monotonic() < deadline:
        try:
            response = httpx.get(url, timeout=1.0)
        except httpx.TransportError as exc:
            last = repr(exc)
        else:
            if response.status_code == status:
                streak += 1
                if streak >= consecutive:
                    return response
                continue
            streak = 0
            last = f"{response.status_code} {response.text}"
        time.sleep(0.1)
    raise AssertionError(f"{url} did not answer {status} within {timeout} s (last: {last})")


BOOTED = "app_started"  # a worker's lifespan startup is done (app/lifespan.py)


def wait_booted(server: Server, boots: int, *, timeout: float = 30) -> None:
    """Until `boots` workers in all (replacements included) have finished their startup, so a
    test never takes the first worker that answers for all of them."""

    def running() -> bool:
        return server.process.poll() is None

    wait_logged_boots(server.output, boots, running=running, timeout=timeout)


def wait_logged_boots(
    log: Callable[[], str],
    boots: int,
    *,
    running: Callable[[], bool] = lambda: True,
    timeout: float = 30,
) -> None:
    """Until the server's `log` (a file, `docker logs`, ...) shows `boots` finished startups;
    the one wait of every multi-worker server test."""
    deadline = time.monotonic() + timeout
    while (booted := (text := log()).count(BOOTED)) < boots:
        assert running(), f"the server exited:\n{text[-3000:]}"
        assert time.monotonic() < deadline, f"{booted} of {boots} workers booted in {timeout} s"
        time.sleep(0.05)


def stop(process: subprocess.Popen[str], grace: float) -> None:
    """TERM, as a process manager stops it (and coverage.py saves what it ran); KILL if it
    outlives `grace` seconds."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def spawn(arguments: Sequence[str], env: dict[str, str], log_path: Path) -> subprocess.Popen[str]:
    """`python <arguments>` from the checkout, its output (stdout and stderr) to `log_path`."""
    with log_path.open("w") as log:
        return subprocess.Popen(
            [sys.executable, *arguments],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )


@contextmanager
def gunicorn(
    env: dict[str, str],
    log_path: Path,
    *,
    workers: int = 1,
    app: str = "app.main:app",
    args: Sequence[str] = (),
    booted: bool = True,
) -> Iterator[Server]:
    """The production command, `gunicorn -c gunicorn_conf.py app.main:app`, on loopback; with
    `booted`, once every worker has finished its startup."""
    port = free_port()
    full_env = clean_env(
        APP_ENV="test", HOST="127.0.0.1", PORT=str(port), WEB_CONCURRENCY=str(workers)
    )
    full_env.update(env)
    command = ["-m", "gunicorn", "-c", "gunicorn_conf.py", *args, app]
    server = Server(spawn(command, full_env, log_path), port, log_path)
    process = server.process
    try:
        if booted:
            wait_booted(server, workers)
        yield server
    finally:
        stop(process, grace=20)
