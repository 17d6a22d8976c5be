"""`make run`: the production command, plus a project-local PostgreSQL when none is given.

With `DATABASE_URL` set: migrate it, then run Gunicorn exactly as production does. Without it:
create (once) or start the cluster in `.local/postgres` from the installed server binaries,
point the service at it with `verify-full` TLS, migrate, run Gunicorn, and stop the cluster
again when Gunicorn exits (Ctrl-C).
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import tomllib
from pathlib import Path

from devtools.pgcluster import PgCluster, server_user_can_reach

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CLUSTER_DIR = ROOT / ".local" / "postgres"
GUNICORN = [sys.executable, "-m", "gunicorn", "-c", "gunicorn_conf.py", "app.main:app"]


def _say(message: str) -> None:
    print(f"[make run] {message}", file=sys.stderr, flush=True)


def _cluster_dir() -> Path:
    if given := os.environ.get("DEV_PG_DIR"):
        return Path(given).resolve()
    if server_user_can_reach(DEFAULT_CLUSTER_DIR):
        return DEFAULT_CLUSTER_DIR
    # As root, PostgreSQL runs as `postgres`, which cannot enter a checkout under a private
    # folder (/root, a mktemp dir). Use a folder of this checkout's own under /var/tmp instead.
    tag = hashlib.sha256(str(ROOT).encode()).hexdigest()[:10]
    fallback = Path("/var/tmp") / f"app-devdb-{tag}"  # noqa: S108 - reused across runs on purpose
    fallback.mkdir(mode=0o755, exist_ok=True)
    _say(f"{DEFAULT_CLUSTER_DIR} is not reachable by the postgres user; using {fallback}")
    return fallback / "postgres"


def service_database() -> str:
    """The database name chosen when the service was generated (pyproject `[tool.service]`)."""
    with (ROOT / "pyproject.toml").open("rb") as file:
        return str(tomllib.load(file)["tool"]["service"]["database"])


def _local_cluster() -> PgCluster:
    where = _cluster_dir()
    cluster = PgCluster.load(where)
    if cluster is None:
        _say(f"creating a PostgreSQL cluster in {where} (first run, a few seconds)")
        return PgCluster.create(where)
    if not cluster.is_running():
        cluster.start()
    return cluster


def main() -> int:
    env = dict(os.environ)
    cluster = None
    if not env.get("DATABASE_URL"):
        cluster = _local_cluster()
        database = service_database()
        cluster.ensure_database(database)
        env["DATABASE_URL"] = cluster.url(database)
        env["DB__SSLMODE"] = "verify-full"
        env["DB__SSLROOTCERT"] = str(cluster.ca_file)
        _say(f"using the local PostgreSQL on localhost:{cluster.port} (TLS verify-full)")
    try:
        migrate = subprocess.run(
            [sys.executable, "-m", "alembic", "upgrade", "head"], env=env, cwd=ROOT, check=False
        )
        if migrate.returncode != 0:
            _say("migrations failed; not starting the server")
            return migrate.returncode
        host = env.get("HOST", "0.0.0.0")  # noqa: S104 - same default as the settings
        shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host  # noqa: S104 - compared, not bound
        _say(f"open http://{shown}:{env.get('PORT', '8000')}/docs  (Ctrl-C stops)")
        server = subprocess.Popen(GUNICORN, env=env, cwd=ROOT)
        # Ctrl-C reaches Gunicorn directly (same process group); this process only waits for
        # it. SIGTERM (e.g. from a supervisor) is passed on.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, lambda *_: server.send_signal(signal.SIGTERM))
        return server.wait()
    finally:
        if cluster is not None:
            cluster.stop()
            _say("local PostgreSQL stopped")


if __name__ == "__main__":
    sys.exit(main())
