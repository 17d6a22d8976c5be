"""The service as `make bench` serves it: the production command on CPU 1 (wrk runs on CPU 0),
production settings, against a throwaway PostgreSQL (TLS on) migrated to head."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from devtools.pgcluster import PgCluster
from devtools.ports import free_port

ROOT = Path(__file__).resolve().parent.parent
# The service's own variables: none of the caller's may change what is measured.
OWN_PREFIXES = (
    "APP_",
    "DB__",
    "HTTP__",
    "LOG__",
    "SERVER__",
    "PROBES__",
    "OTEL_",
    "AUTH__",
    "IDEMPOTENCY__",
)


def bench_env(cluster: PgCluster) -> dict[str, str]:
    """Production settings against `cluster`; nothing of the caller's configuration."""
    return {k: v for k, v in os.environ.items() if not k.startswith(OWN_PREFIXES)} | {
        "APP_ENV": "production",
        "DATABASE_URL": cluster.url(),
        "DB__SSLMODE": "verify-full",
        "DB__SSLROOTCERT": str(cluster.ca_file),
        "HTTP__ALLOWED_HOSTS": "127.0.0.1,localhost",
        "AUTH__MODE": "none",
        "HOST": "127.0.0.1",
        "WEB_CONCURRENCY": "2",
        # Steady state: no worker recycling in the middle of a round.
        "SERVER__MAX_REQUESTS": "0",
    }


def options(description: str) -> argparse.Namespace:
    """What every benchmark takes: --rounds, --seconds, --quick."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=4)
    parser.add_argument("--quick", action="store_true", help="one short round: shows it runs")
    return parser.parse_args()


@contextmanager
def throwaway_database(name: str, tables: str = "") -> Iterator[tuple[PgCluster, Path]]:
    """A PostgreSQL of the benchmark's own (TLS on), migrated to head, with the benchmark's own
    `tables`, and a work directory; both removed afterwards."""
    work = Path(tempfile.mkdtemp(prefix=f"service-bench-{name}-"))
    work.chmod(0o755)  # PostgreSQL runs as another user when this runs as root
    cluster = PgCluster.create(work / "pg")
    try:
        migrate(bench_env(cluster))
        if tables:
            cluster.psql(tables, "app")
        yield cluster, work
    finally:
        cluster.destroy()
        shutil.rmtree(work, ignore_errors=True)


def migrate(env: dict[str, str]) -> None:
    command = [sys.executable, "-m", "alembic", "upgrade", "head"]
    subprocess.run(command, cwd=ROOT, env=env, check=True, capture_output=True)


def gunicorn_command(app: str = "app.main:app", *extra: str, cpus: str | None = "1") -> list[str]:
    """The production command, on CPU 1 (or `cpus`; None: wherever the kernel puts it)."""
    gunicorn = [sys.executable, "-m", "gunicorn", "-c", "gunicorn_conf.py", *extra, app]
    return ["taskset", "-c", cpus, *gunicorn] if cpus else gunicorn


@dataclass
class Running:
    process: subprocess.Popen[bytes]
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def launch(command: Sequence[str], env: dict[str, str], log: Path) -> Running:
    """`command` on a free port (`{port}` in it is replaced), without waiting for it."""
    port = free_port()
    with log.open("ab") as out:
        process = subprocess.Popen(
            [part.replace("{port}", str(port)) for part in command],
            cwd=ROOT,
            env=env | {"PORT": str(port)},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return Running(process, port)


# Generous: several servers may boot at once, all on one CPU.
def wait_up(running: Running, up_when: str = "/ready", *, timeout: float = 120) -> None:
    """Until `up_when` answers below 500 (a 401 where a token is required is up)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{running.url}{up_when}", timeout=1).status_code < 500:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    stop(running)
    raise RuntimeError(f"the server on port {running.port} did not start in {timeout} s")


def stop(running: Running) -> None:
    running.process.terminate()
    running.process.wait(timeout=60)


@contextmanager
def serving(
    command: Sequence[str], env: dict[str, str], log: Path, *, up_when: str = "/ready"
) -> Iterator[Running]:
    running = launch(command, env, log)
    wait_up(running, up_when)
    try:
        yield running
    finally:
        stop(running)
