"""The database `make run` and `make revision` use: `DATABASE_URL` when it is set, otherwise a
project-local PostgreSQL in `.local/postgres`, created once from the installed server binaries,
started for the command and stopped after it, with `verify-full` TLS like production."""

from __future__ import annotations

import hashlib
import os
import sys
import tomllib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from devtools.pgcluster import PgCluster, server_user_can_reach

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CLUSTER_DIR = ROOT / ".local" / "postgres"
Say = Callable[[str], None]


def teller(command: str) -> Say:
    """Messages to the terminal, prefixed with the make target that prints them."""
    return lambda message: print(f"[{command}] {message}", file=sys.stderr, flush=True)


def _cluster_dir(say: Say) -> Path:
    if given := os.environ.get("DEV_PG_DIR"):
        return Path(given).resolve()
    if server_user_can_reach(DEFAULT_CLUSTER_DIR):
        return DEFAULT_CLUSTER_DIR
    # As root, PostgreSQL runs as `postgres`, which cannot enter a checkout under a private
    # folder (/root, a mktemp dir). Use a folder of this checkout's own under /var/tmp instead.
    tag = hashlib.sha256(str(ROOT).encode()).hexdigest()[:10]
    fallback = Path("/var/tmp") / f"app-devdb-{tag}"  # noqa: S108 - reused across runs on purpose
    fallback.mkdir(mode=0o755, exist_ok=True)
    say(f"{DEFAULT_CLUSTER_DIR} is not reachable by the postgres user; using {fallback}")
    return fallback / "postgres"


def service_database() -> str:
    """The database name chosen when the service was generated (pyproject `[tool.service]`)."""
    with (ROOT / "pyproject.toml").open("rb") as file:
        return str(tomllib.load(file)["tool"]["service"]["database"])


def _local_cluster(say: Say) -> tuple[PgCluster, bool]:
    """The cluster, running; and whether this call started it (then it stops it again)."""
    where = _cluster_dir(say)
    cluster = PgCluster.load(where)
    if cluster is None:
        say(f"creating a PostgreSQL cluster in {where} (first run, a few seconds)")
        return PgCluster.create(where), True
    if cluster.is_running():
        return cluster, False  # another command's (`make run` and `make worker` side by side)
    cluster.start()
    return cluster, True


@contextmanager
def database_env(say: Say) -> Iterator[dict[str, str]]:
    """This process's environment, with `DATABASE_URL` naming the database to use."""
    env = dict(os.environ)
    if env.get("DATABASE_URL"):
        yield env
        return
    cluster, started = _local_cluster(say)
    try:
        database = service_database()
        cluster.ensure_database(database)
        env["DATABASE_URL"] = cluster.url(database)
        env["DB__SSLMODE"] = "verify-full"
        env["DB__SSLROOTCERT"] = str(cluster.ca_file)
        say(f"using the local PostgreSQL on localhost:{cluster.port} (TLS verify-full)")
        yield env
    finally:
        if started:
            cluster.stop()
            say("local PostgreSQL stopped")
