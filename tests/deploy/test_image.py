"""The production image, built by the commands deploy/README.md shows and run by a real engine.

The container joins the host's network namespace so it reaches the session's PostgreSQL on
loopback as `localhost`, whose certificate the session's CA signed: production settings,
verify-full TLS, nothing relaxed for the test.
"""

from __future__ import annotations

import json
import shlex
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

import app.domains  # noqa: F401 - every domain's tables on Base.metadata
from app.db.base import Base
from devtools.pgcluster import PgCluster
from devtools.ports import free_port
from tests.containers import Docker
from tests.deploy.test_kubernetes import MIGRATE_JOB, one, render
from tests.docs import documented
from tests.support import (
    ROOT,
    SERVICE,
    missing_tables,
    needs_example,
    wait_for,
    wait_logged_boots,
)

# Waits for the run's Docker engine, which a new machine prepares in minutes (base images).
pytestmark = [pytest.mark.slow, pytest.mark.docker, pytest.mark.timeout(900)]
IMAGE = str(SERVICE["slug"])
CA_IN_CONTAINER = "/run/secrets/db-ca.crt"
WORKERS = 2
HEALTHY_WITHIN_S = 10 + 2 + 20  # the HEALTHCHECK's interval + timeout, with its start period


@dataclass
class Container:
    name: str
    port: int


@pytest.fixture(scope="module")
def image(docker: Docker) -> str:
    """Built by the documented commands: with the CA bundle secret first (this machine's builds
    go through a TLS-intercepting proxy), then the plain form, which BuildKit's cache answers."""
    with_ca = documented("deploy/README.md", "docker build --secret")
    plain = documented("deploy/README.md", "docker build -t")
    for command in (with_ca, plain):
        built = docker.run(command, timeout=900)
        assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    return IMAGE


def production_env(pg: PgCluster, database: str) -> dict[str, str]:
    return {
        "APP_ENV": "production",
        "DATABASE_URL": pg.url(database),
        "DB__SSLMODE": "verify-full",
        "DB__SSLROOTCERT": CA_IN_CONTAINER,
        "HTTP__ALLOWED_HOSTS": "127.0.0.1",
        "AUTH__MODE": "none",
    }


def docker_run(pg: PgCluster, env: dict[str, str], *args: str) -> str:
    flags = ["--network", "host", "--read-only", "--tmpfs", "/tmp"]  # noqa: S108 - in the container
    flags += ["-v", f"{pg.ca_file}:{CA_IN_CONTAINER}:ro"]
    flags += [f"--env={key}={value}" for key, value in env.items()]
    return shlex.join(["docker", "run", *flags, *args])


@pytest.fixture(scope="module")
def migrated_by_the_image(docker: Docker, image: str, pg: PgCluster) -> str:
    """A new database, migrated by the Kubernetes Job's command, then the Procfile's release
    command (which finds nothing left to do), both run in the image."""
    database = "image_test"
    pg.ensure_database(database)
    env = production_env(pg, database)
    job = one(render("base"), "Job", MIGRATE_JOB)["spec"]["template"]["spec"]["containers"][0]
    release = (ROOT / "Procfile").read_text().split("release:", 1)[1].splitlines()[0].strip()
    for command in (shlex.join(job["command"]), release):
        ran = docker.run(docker_run(pg, env, "--rm", image, "sh", "-c", command))
        assert ran.returncode == 0, ran.stdout + ran.stderr
    assert missing_tables(pg, database, Base.metadata.tables) == []  # every domain's table
    return database


def container_log(docker: Docker, name: str) -> str:
    logged = docker.run(f"docker logs {name}")  # the container's stdout and stderr, as such
    return logged.stdout + logged.stderr


@pytest.fixture(scope="module")
def serving(
    docker: Docker, image: str, pg: PgCluster, migrated_by_the_image: str
) -> Iterator[Container]:
    port = free_port()
    name = f"{IMAGE}-test-{port}"
    env = production_env(pg, migrated_by_the_image)
    # Host networking: stay on loopback, on a free port.
    env |= {"HOST": "127.0.0.1", "PORT": str(port), "WEB_CONCURRENCY": str(WORKERS)}
    started = docker.run(docker_run(pg, env, "-d", "--name", name, image))
    assert started.returncode == 0, started.stderr
    try:
        wait_logged_boots(lambda: container_log(docker, name), WORKERS, timeout=60)
        wait_for(f"http://127.0.0.1:{port}/ready", timeout=60)
        yield Container(name, port)
    finally:
        docker.run(f"docker rm -f {name}")


def test_the_image_runs_as_uid_10001_on_a_read_only_root(
    docker: Docker, serving: Container
) -> None:
    user = docker.run(f"docker exec {serving.name} id -u")
    assert user.stdout.strip() == "10001"
    write = docker.run(f"docker exec {serving.name} touch /app/written")
    assert write.returncode != 0
    assert "Read-only file system" in write.stderr
    # The places it must write stay writable: /tmp (metrics) and /dev/shm (heartbeats).
    assert docker.run(f"docker exec {serving.name} touch /tmp/x /dev/shm/x").returncode == 0


def test_the_image_hides_the_schema_in_production(serving: Container) -> None:
    base = f"http://127.0.0.1:{serving.port}"
    assert httpx.get(f"{base}/ready").status_code == 200  # the database, over verified TLS
    assert httpx.get(f"{base}/openapi.json").status_code == 404


@needs_example
def test_the_image_serves_the_api_in_production_over_verified_tls(serving: Container) -> None:
    base = f"http://127.0.0.1:{serving.port}"
    created = httpx.post(f"{base}/api/v1/items", json={"name": "from the image"})
    assert created.status_code == 201, created.text
    fetched = httpx.get(f"{base}/api/v1/items/{created.json()['id']}")
    assert fetched.json()["name"] == "from the image"
    assert httpx.get(f"{base}/openapi.json").status_code == 404  # production: no schema


def test_the_image_turns_healthy_by_its_own_healthcheck(docker: Docker, serving: Container) -> None:
    deadline = time.monotonic() + HEALTHY_WITHIN_S + 5
    status = ""
    while time.monotonic() < deadline:
        health = docker.run(f"docker inspect --format '{{{{json .State.Health}}}}' {serving.name}")
        status = json.loads(health.stdout)["Status"]
        if status == "healthy":
            break
        time.sleep(1)
    assert status == "healthy"


def test_the_image_stops_cleanly_on_sigterm(docker: Docker, serving: Container) -> None:
    """Last in this module: `docker stop` sends TERM, and Gunicorn exits 0 after draining."""
    stopped = docker.run(f"docker stop --time 40 {serving.name}", timeout=60)
    assert stopped.returncode == 0, stopped.stderr
    code = docker.run(f"docker inspect --format '{{{{.State.ExitCode}}}}' {serving.name}")
    assert code.stdout.strip() == "0"
