"""Session fixtures: one throwaway PostgreSQL (TLS on, free port) for the whole run."""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from app.factory import create_app
from app.settings import Settings
from devtools.pgcluster import PgCluster
from tests.containers import PREPARED, Docker, shared, stop
from tests.support import asgi_client, make_settings, migrate


def new_cluster() -> PgCluster:
    base = Path(tempfile.mkdtemp(prefix="app-test-pg-"))
    base.chmod(0o755)  # PostgreSQL runs as another user when the tests run as root
    return PgCluster.create(base / "cluster")


@pytest.fixture(scope="session")
def pg() -> Iterator[PgCluster]:
    cluster = new_cluster()
    try:
        yield cluster
    finally:
        cluster.destroy()
        cluster.base.parent.rmdir()


@pytest.fixture(scope="session")
def migrated(pg: PgCluster) -> PgCluster:
    migrate(make_settings(pg))
    return pg


@pytest.fixture
def settings(migrated: PgCluster) -> Settings:
    migrated.psql("TRUNCATE items RESTART IDENTITY", database="app")
    return make_settings(migrated)


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The whole app in-process, lifespan included, talking to the real database."""
    async with asgi_client(create_app(settings)) as http:
        yield http


@pytest.fixture(scope="session")
def docker() -> Docker:
    """A Docker engine for the container tests, or a skip that says why there is none."""
    found = shared()
    if found.problem is not None:
        pytest.skip(f"container tests need Docker: {found.problem} (README: Container tests)")
    return found


def pytest_unconfigure() -> None:
    """After every session hook: stop the Docker daemon if this run started it."""
    while PREPARED:
        stop(PREPARED.pop())
