"""Misconfiguration through the real command: one message, non-zero exit, nothing bound.

Gunicorn reads `gunicorn_conf.py`, which validates the settings before it binds or forks, so the
message appears once and the master exits instead of workers failing in a loop.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Callable

import pytest

from tests.support import ROOT, clean_env

SECRET = "Sup3r-Secret-Value-kq81"
GOOD_URL = f"postgresql://app:{SECRET}@db.internal/app"

CASES: dict[str, tuple[dict[str, str], str]] = {
    "missing DATABASE_URL in production": (
        {"APP_ENV": "production", "HTTP__ALLOWED_HOSTS": "api.example.com"},
        "DATABASE_URL",
    ),
    "bad APP_ENV": ({"APP_ENV": "staging"}, "APP_ENV"),
    "negative pool size": ({"DB__POOL_SIZE": "-3", "DATABASE_URL": GOOD_URL}, "DB__POOL_SIZE"),
    "unknown TLS mode": ({"DB__SSLMODE": "prefer-ish", "DATABASE_URL": GOOD_URL}, "DB__SSLMODE"),
    "verify-full without a CA": (
        {"DB__SSLMODE": "verify-full", "DATABASE_URL": GOOD_URL},
        "DB__SSLROOTCERT",
    ),
    "sslmode in the URL": ({"DATABASE_URL": GOOD_URL + "?sslmode=verify-full"}, "DATABASE_URL"),
    "non-integer PORT": ({"PORT": "eighty"}, "PORT"),
    "unknown trace sampler": (
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_TRACES_SAMPLER": "often"},
        "OTEL_TRACES_SAMPLER",
    ),
    "a propagator that is not installed": (
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_PROPAGATORS": "b3"},
        "OTEL_PROPAGATORS",
    ),
    "a misspelt OpenTelemetry variable": (
        {"OTEL_TRACES_SAMPLE": "always_on"},
        "OTEL_TRACES_SAMPLE",
    ),
    "exporter headers the SDK would skip": (
        {"OTEL_EXPORTER_OTLP_HEADERS": f"x-api-key={SECRET};v2"},
        "OTEL_EXPORTER_OTLP_HEADERS",
    ),
    "an issuer that looks like loopback": (
        {
            "AUTH__MODE": "oidc",
            "AUTH__ISSUER": "http://localhost.evil.example",
            "AUTH__AUDIENCE": "api://svc",
        },
        "AUTH__ISSUER",
    ),
    "a key set on the loopback name's user-info look-alike": (
        {
            "AUTH__MODE": "oidc",
            "AUTH__ISSUER": "https://login.example.com",
            "AUTH__AUDIENCE": "api://svc",
            "AUTH__JWKS_URL": "http://127.0.0.1@evil.example/keys",
        },
        "AUTH__JWKS_URL",
    ),
    "production with weak TLS": (
        {
            "APP_ENV": "production",
            "HTTP__ALLOWED_HOSTS": "api.example.com",
            "DATABASE_URL": GOOD_URL,
            "DB__SSLMODE": "require",
        },
        "DB__SSLMODE",
    ),
}


def refused_on_a_held_port(arguments: list[str], env: Callable[[int], dict[str, str]]) -> str:
    """`python <arguments>` with `env(port)` for a loopback port this test holds: its output,
    once it has exited 2 (invalid configuration)."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        result = subprocess.run(
            [sys.executable, *arguments],
            cwd=ROOT,
            env=clean_env(HOST="127.0.0.1") | env(held.getsockname()[1]),
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    return output


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES))
def test_gunicorn_refuses_to_start_and_names_the_variable(case: str) -> None:
    env_overrides, variable = CASES[case]
    # Had Gunicorn tried to bind the held port, it would have said "Connection in use" and
    # retried before giving up.
    command = ["-m", "gunicorn", "-c", "gunicorn_conf.py", "app.main:app"]
    output = refused_on_a_held_port(
        command, lambda port: {"PORT": str(port), "WEB_CONCURRENCY": "1"} | env_overrides
    )
    assert output.count("Invalid configuration") == 1
    assert f"  - {variable}:" in output
    assert SECRET not in output
    assert "Traceback" not in output
    assert "Connection in use" not in output  # it never tried to bind the port
    assert "worker_gc" not in output  # the first thing a worker logs: none was started


# jobs-only
JOB_CASES = {
    "bad number": ({"JOBS__CONCURRENCY": "lots"}, "JOBS__CONCURRENCY"),
    "retries that shrink": (
        {"JOBS__RETRY_INITIAL_SECONDS": "60", "JOBS__RETRY_MAX_SECONDS": "5"},
        "JOBS__RETRY_INITIAL_SECONDS",
    ),
    "worker behind PgBouncer": (
        {"DATABASE_URL": f"postgresql://app:{SECRET}@localhost/app", "DB__PGBOUNCER": "true"},
        "JOBS__DATABASE_URL",
    ),
    "not a database URL": (
        {"JOBS__DATABASE_URL": f"mysql://app:{SECRET}@db/app"},
        "JOBS__DATABASE_URL",
    ),
    # FastAPI's import reads it and raises: the check must come before that import.
    "a propagator that is not installed": ({"OTEL_PROPAGATORS": "b3"}, "OTEL_PROPAGATORS"),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(JOB_CASES))
def test_the_worker_refuses_to_start_and_names_the_variable(case: str) -> None:
    env_overrides, variable = JOB_CASES[case]
    output = refused_on_a_held_port(
        ["-m", "app.jobs"], lambda port: {"JOBS__PORT": str(port)} | env_overrides
    )
    assert f"  - {variable}:" in output
    assert SECRET not in output
    assert "Traceback" not in output
    assert "address already in use" not in output.lower()


# /jobs-only
