"""The README's other targets, typed as it shows them: print-config, migrate, bench-quick."""

from __future__ import annotations

import json
import re
import subprocess

import pytest

import app.domains  # noqa: F401 - every domain's tables on Base.metadata
from app.db.base import Base
from bench.endpoints import ENDPOINTS
from devtools.pgcluster import PgCluster
from tests import parts
from tests.docs import documented, typed
from tests.support import clean_env, db_env, missing_tables, unmeasured

pytestmark = pytest.mark.slow


def make(
    starts: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return typed(documented("README.md", starts), env=clean_env(**(env or {})), timeout=timeout)


def test_make_print_config_shows_the_settings_the_environment_gives() -> None:
    env = {"WEB_CONCURRENCY": "3", "HOST": "127.0.0.1", "PORT": "9123"}
    printed = make("make print-config", env)
    assert printed.returncode == 0, printed.stderr
    config = json.loads(printed.stdout)
    assert config["workers"] == 3
    assert config["bind"] == ["127.0.0.1:9123"]


def test_make_migrate_creates_the_schema_in_database_url(pg: PgCluster) -> None:
    pg.ensure_database("make_migrate")
    migrated = make("make migrate", db_env(pg, "make_migrate"))
    assert migrated.returncode == 0, migrated.stderr
    # Every table the domains declare, and Alembic's record of the revision it reached.
    tables = ("alembic_version", *Base.metadata.tables)
    assert missing_tables(pg, "make_migrate", tables) == []


@pytest.mark.timeout(600)
def test_make_bench_quick_runs_every_benchmark_without_errors() -> None:
    parts.command("wrk")
    # Unmeasured: under coverage the servers would run several times slower, and the code
    # they run is measured by the server tests.
    ran = typed(
        documented("README.md", "make bench-quick"), env=unmeasured(clean_env()), timeout=600
    )
    output = ran.stdout + ran.stderr
    assert ran.returncode == 0, output[-4000:]
    assert "FAILED" not in output
    for _, path in ENDPOINTS:  # a row for each of the service's endpoints, none failed
        assert re.search(
            rf"^\| .* \| `{re.escape(path)}` \| [\d,]+ \|.* \| 0 \| ", ran.stdout, re.M
        ), path
    # template-only
    # The template's make bench-quick runs its laboratory's comparisons too (lab/lab.mk).
    lab = ("/health | stack", "tracing on", "a valid token", "Process manager", "Slow clients")
    for table in (*lab, "worker count", "HUP"):
        assert table in ran.stdout, table
    # /template-only
