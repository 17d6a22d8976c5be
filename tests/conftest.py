"""Session fixtures: one throwaway PostgreSQL (TLS on, free port) for the whole run."""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

import app.domains  # noqa: F401 - every domain's tables on Base.metadata, for the cleanup
from app.db.base import Base
from app.settings import Settings
from devtools.pgcluster import PgCluster
from tests import notes
from tests.containers import PREPARED, Docker, shared, stop
from tests.routes import service_with_test_routes
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
    notes.create_table(pg)
    return pg


def empty_tables(cluster: PgCluster, database: str = "app") -> None:
    """Every table the service's metadata and the tests' own know, whatever the domains."""
    tables = [*Base.metadata.tables, *notes.NotesBase.metadata.tables]
    cluster.psql(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY", database=database)


@pytest.fixture
def settings(migrated: PgCluster) -> Settings:
    empty_tables(migrated)
    return make_settings(migrated)


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The whole app in-process (with the test-only routes), lifespan included, talking to
    the real database."""
    async with asgi_client(service_with_test_routes(settings)) as http:
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
