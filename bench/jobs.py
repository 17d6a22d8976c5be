"""`make bench`, background jobs: what enqueueing costs a write, how many jobs a second one and
two worker processes run, and how soon an idle worker starts a job after its commit.

- Enqueue cost: a write without and with a job enqueued in its transaction (one row, and the
  example's create when it is there), served by the production command, in interleaved wrk
  rounds.
- Throughput: a batch of jobs that do nothing, drained by `python -m bench.worker` (the real
  worker, with the benchmark's jobs) in 1 and in 2 processes, interleaved rounds.
- Latency: jobs enqueued one at a time, each committed while the worker idles; from the commit
  returning to the job starting (both clocks are this machine's).
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from app.db.engine import build_engine
from app.db.session import write_sessions
from app.jobs.definitions import Job
from app.jobs.queue import JobQueue
from app.settings import load_settings
from bench.jobs_app import NOOP, STAMP, TABLES, Empty, Stamp
from bench.server import (
    bench_env,
    gunicorn_command,
    launch,
    options,
    serving,
    stop,
    throwaway_database,
    wait_up,
)
from bench.table import ALIGN, HEADER, cells, failed, verdict
from bench.wrk import Sample, wrk
from devtools.pgcluster import PgCluster
from devtools.ports import free_port

CONNECTIONS = 64
# (what it is, without the job, with it); the first pair is the baseline of nothing.
WRITES = [
    ("one row", "/bench/writes", "/bench/writes?job=true"),
    # example-only
    ("an item, as the example creates one", "/bench/items", "/bench/items?job=true"),
    # /example-only
]
POST = Path(__file__).with_name("post.lua")


def enqueue_cost(
    env: dict[str, str], log: Path, count: int, seconds: float
) -> tuple[list[str], bool]:
    samples: dict[str, list[Sample]] = {
        path: [] for _, alone, with_job in WRITES for path in (alone, with_job)
    }
    with serving(gunicorn_command("bench.jobs_app:create_bench_app()"), env, log) as server:
        for path in samples:  # pools filled, first-request costs paid
            wrk(server.url + path, seconds=1, connections=CONNECTIONS, script=POST)
        for number in range(count):
            for path in samples if number % 2 == 0 else reversed(samples):
                samples[path].append(
                    wrk(
                        server.url + path,
                        seconds=seconds,
                        connections=CONNECTIONS,
                        master=server.process.pid,
                        script=POST,
                    )
                )
    lines = [
        f"| write | path | {HEADER.format(baseline='the same write without the job')} |",
        f"|---|---|{ALIGN}|",
    ]
    for label, alone, with_job in WRITES:
        lines.append(f"| {label} | `POST {alone}` | {cells(samples[alone], samples[alone])} |")
        cell = cells(samples[with_job], samples[alone])
        lines.append(f"| {label}, + its job enqueued | `POST {with_job}` | {cell} |")
    return lines, any(failed(runs) for runs in samples.values())


@contextmanager
def workers(env: dict[str, str], log: Path, processes: int) -> Iterator[None]:
    """`processes` benchmark workers, each up (its /health answering)."""
    with ExitStack() as stack:
        for _ in range(processes):
            port = free_port()
            command = [sys.executable, "-m", "bench.worker"]
            running = launch(command, env | {"JOBS__PORT": str(port)}, log)
            running.port = port
            stack.callback(stop, running)
            wait_up(running, "/health")
        yield


async def enqueue(env: dict[str, str], job: Job[Any], payloads: Sequence[BaseModel]) -> float:
    """`payloads` queued in one transaction; the time its commit returned."""
    settings = load_settings(database_url=env["DATABASE_URL"])
    url = settings.database_url_object()
    assert url is not None  # noqa: S101 - set by bench_env
    engine = build_engine(url, settings.db, hide_parameters=True)
    try:
        async with write_sessions(engine)() as session, session.begin():
            queue = JobQueue(session)
            for payload in payloads:
                await queue.enqueue(job, payload)
        return time.time()
    finally:
        await engine.dispose()


def queue_empty(cluster: PgCluster) -> bool:
    return cluster.psql("SELECT count(*) FROM pgqueuer", "app").strip() == "0"


def throughput(
    env: dict[str, str], cluster: PgCluster, log: Path, count: int, jobs: int
) -> list[str]:
    rates: dict[int, list[float]] = {1: [], 2: []}
    for number in range(count):
        for processes in (1, 2) if number % 2 == 0 else (2, 1):
            with workers(env, log, processes):
                asyncio.run(enqueue(env, NOOP, [Empty()] * jobs))
                started = time.monotonic()  # at the commit: the jobs are visible from here
                while not queue_empty(cluster):
                    time.sleep(0.01)
                rates[processes].append(jobs / (time.monotonic() - started))
    lines = [
        f"| worker processes | jobs/s, {jobs} queued (median) | rounds |",
        "|---:|---:|---|",
    ]
    for processes, measured in rates.items():
        shown = ", ".join(f"{rate:,.0f}" for rate in measured)
        lines.append(f"| {processes} | {statistics.median(measured):,.0f} | {shown} |")
    return lines


def latency(env: dict[str, str], cluster: PgCluster, log: Path, jobs: int) -> list[str]:
    """Commit to start, one job at a time, the worker idle in between."""
    waits: list[float] = []
    with workers(env, log, 1):
        for number in range(jobs):
            committed = asyncio.run(enqueue(env, STAMP, [Stamp(number=number)]))
            while not (found := cluster.psql(started_of(number), "app").strip()):
                time.sleep(0.002)
            waits.append((float(found) - committed) * 1000)
            time.sleep(0.05)
    ordered = sorted(waits)
    p50, p99 = statistics.median(ordered), ordered[max(0, round(0.99 * len(ordered)) - 1)]
    return [
        "| from commit to start, idle worker | p50 ms | p99 ms | jobs |",
        "|---|---:|---:|---:|",
        f"| woken by LISTEN/NOTIFY | {p50:.1f} | {p99:.1f} | {len(ordered)} |",
    ]


def started_of(number: int) -> str:
    return f"SELECT started FROM bench_job_starts WHERE number = {int(number)}"  # noqa: S608 - an int


def main() -> int:
    args = options(__doc__.splitlines()[0])
    count, seconds, jobs, stamps = (
        (1, 1, 100, 10) if args.quick else (args.rounds, args.seconds, 2000, 200)
    )
    with throwaway_database("jobs", TABLES) as (cluster, work):
        env = bench_env(cluster)
        cost, failures = enqueue_cost(env, work / "gunicorn.log", count, seconds)
        # The writes' jobs are not the throughput rounds' to drain (the first round counted them).
        cluster.psql("TRUNCATE pgqueuer", "app")
        rates = throughput(env, cluster, work / "worker.log", count, jobs)
        waits = latency(env, cluster, work / "worker.log", stamps)
    print(
        f"\nBackground jobs: wrk -t1 -c{CONNECTIONS}, {count} interleaved rounds of {seconds} s, "
        "2 Gunicorn workers (server on CPU 1, wrk on CPU 0); medians over the rounds\n"
    )
    for table in (cost, rates, waits):
        print("\n".join(table) + "\n")
    return verdict(failures)


if __name__ == "__main__":
    sys.exit(main())
