"""Session fixtures: one throwaway PostgreSQL (TLS on, free port) per test process; the run's
shared folder (tests/run.py) and its Docker engine (tests/containers.py)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from hypothesis import settings as hypothesis_settings
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

import app.domains
import app.idempotency.models  # noqa: F401 - and the stored answers'
from app.db.base import Base
from app.db.engine import build_engine
from app.db.session import write_sessions
from app.settings import Settings
from devtools.pgcluster import PgCluster
from tests import (
    containers,
    jobs,  # jobs-only
    notes,
    run,
)
from tests.containers import Docker
from tests.parts import IN_CI, missing
from tests.routes import service_with_test_routes
from tests.support import asgi_client, make_settings, migrate

# Fuzzing that can be replayed: on a developer's machine the examples that failed are kept in
# .hypothesis/ and tried first next time; CI draws from a fixed seed (the same examples every
# run). Both print the `@reproduce_failure` line of a failure.
hypothesis_settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
hypothesis_settings.register_profile("developer", print_blob=True)
hypothesis_settings.load_profile("ci" if IN_CI else "developer")


@contextmanager
def throwaway_cluster(*, migrated: bool = False) -> Iterator[PgCluster]:
    """A PostgreSQL of its own (TLS on, free port), removed afterwards; `migrated`: with the
    service's schema and the tests' own tables."""
    base = Path(tempfile.mkdtemp(prefix="app-test-pg-"))
    base.chmod(0o755)  # PostgreSQL runs as another user when the tests run as root
    cluster = PgCluster.create(base / "cluster")
    try:
        if migrated:
            create_schema(cluster)
        yield cluster
    finally:
        cluster.destroy()
        base.rmdir()


def create_schema(cluster: PgCluster) -> None:
    migrate(make_settings(cluster))
    notes.create_table(cluster)
    jobs.create_tables(cluster)  # jobs-only


def running(cluster: PgCluster) -> PgCluster:
    """`cluster`, started again if a test before stopped it."""
    if not cluster.is_running():
        cluster.start()
    return cluster


@pytest.fixture(scope="session")
def pg() -> Iterator[PgCluster]:
    with throwaway_cluster() as cluster:
        yield cluster


@pytest.fixture(scope="session")
def migrated(pg: PgCluster) -> PgCluster:
    create_schema(pg)
    return pg


def empty_tables(cluster: PgCluster, database: str = "app") -> None:
    """Every table the service's metadata and the tests' own know, whatever the domains."""
    tables = [*Base.metadata.tables, *notes.NotesBase.metadata.tables]
    tables += [*jobs.QUEUE_TABLES, *jobs.TABLES]  # jobs-only
    cluster.psql(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY", database=database)


@pytest.fixture
def settings(migrated: PgCluster) -> Settings:
    empty_tables(migrated)
    return make_settings(migrated)


@pytest.fixture
async def sessions(settings: Settings) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """Write sessions on the test database, as a request gets them: for a test that plays
    another request or a scheduled job."""
    url = settings.database_url_object()
    assert url is not None
    engine = build_engine(url, settings.db, hide_parameters=False)
    try:
        yield write_sessions(engine)
    finally:
        await engine.dispose()


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The whole app in-process (with the test-only routes), lifespan included, talking to
    the real database."""
    async with asgi_client(service_with_test_routes(settings)) as http:
        yield http


@pytest.fixture(scope="session")
def docker() -> Docker:
    """The run's Docker engine for the container tests, or a skip (under CI, a failure) that
    says why there is none."""
    found = containers.shared()
    if found.problem is not None:
        missing("a Docker engine", f"{found.problem} (README: Container tests)")
    return found


OWNER = pytest.StashKey[bool]()


def pytest_configure(config: pytest.Config) -> None:
    config.stash[OWNER] = run.begin()


# The longest files first, longest at the top, so that in parallel runs none is left to run
# alone at the end (test-all keeps this order: --no-loadscope-reorder).
LONGEST_FIRST = (
    "tests/template/test_generated_service.py",
    "tests/server/test_make_targets.py",
    "tests/template/",
    "tests/deploy/test_compose.py",
    "tests/server/test_jobs_worker.py",  # jobs-only
    "tests/deploy/test_image.py",
    "tests/server/test_jobs_faults.py",  # jobs-only
)


def _rank(item: pytest.Item) -> int:
    starts = (i for i, prefix in enumerate(LONGEST_FIRST) if item.nodeid.startswith(prefix))
    return next(starts, len(LONGEST_FIRST))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=_rank)  # stable: a file's tests keep their order


def pytest_collection_finish(session: pytest.Session) -> None:
    if any(item.get_closest_marker("docker") for item in session.items):
        containers.prepare_in_background()


def pytest_unconfigure(config: pytest.Config) -> None:
    """The run's owner, after every other hook: end what the run started, then its folder."""
    if config.stash.get(OWNER, False):
        run.end_sessions()
        containers.stop()
        run.end()


@pytest.fixture(autouse=True)
def _no_otel_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The SDK reads OpenTelemetry's variables from the process environment: none of the
    caller's reaches an app built in-process; a test sets the ones it needs."""
    for name in [name for name in os.environ if name.startswith("OTEL_")]:
        monkeypatch.delenv(name)
