"""The template's comparisons: the full stack against a bare app, same Gunicorn config, interleaved
rounds (`make bench` in the template repository; lab/README.md).

Starts a throwaway PostgreSQL (TLS on) with one row to read, the service with one bench route
(`lab.stack_app:app`, production settings, JSON logs to a file; the example domain's read
too when the service has it) and the bare app (`lab.bare_app:app`), both with 2 workers and
pinned to one core while wrk runs on the other (docs/facts.md: benchmarks). Each
round runs every (endpoint, server) pair once, in alternating order; the table gives medians
over the rounds and the median of the per-round ratios stack / bare. Any non-2xx response or
socket error is reported and makes the run fail.

The tracing rows serve the same stack twice more with tracing on, exporting to a local OTLP
receiver (`lab/otlp_sink.py`): every request sampled, and the default ratio; their ratios are
against the stack with tracing off. The bearer-token rows serve it twice more with
AUTH__MODE=oidc and a local OpenID provider, every request carrying a valid token: with the
verified-token cache, and without it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

from bench.server import (
    ROOT,
    Running,
    bench_env,
    gunicorn_command,
    launch,
    migrate,
    stop,
    wait_up,
)
from bench.table import ALIGN, HEADER, cells, failed, verdict
from bench.wrk import Sample, wrk
from devtools.oidc_provider import AUDIENCE, Provider, openid_provider
from devtools.pgcluster import APP_USER, PgCluster
from lab.otlp_sink import otlp_sink
from lab.rows import CREATE

# Per endpoint: (label, server, path); the last one is the baseline the ratios divide by.
CASES: dict[str, list[tuple[str, str, str]]] = {
    "/health": [("stack", "stack", "/health"), ("bare", "bare", "/health")],
    "GET one row by id": [
        ("stack (DbSession, Core select)", "stack", "/bench/rows/1"),
        # What most templates do: ORM session, per-request transaction, pool_pre_ping.
        ("bare + ORM session in a transaction", "bare", "/orm/rows/1"),
        ("bare + raw asyncpg", "bare", "/bench/rows/1"),
    ],
}
# The example domain's read, when the service still has it: the same row shape and query.
EXAMPLE_READ = (
    "GET /api/v1/items/{id}",
    [("stack", "stack", "/api/v1/items/1"), ("bare + raw asyncpg", "bare", "/bench/rows/1")],
)


# The cost of tracing on the item read (the bench's own row when the example is gone): every
# request traced and exported to a local receiver, the default ratio, and tracing off.
def tracing_cases(path: str) -> tuple[str, list[tuple[str, str, str]]]:
    return (
        f"GET {path.replace('/1', '/{id}')}, tracing",
        [
            ("stack, tracing on, every request sampled", "traced_all", path),
            ("stack, tracing on, default ratio (0.1)", "traced_default", path),
            ("stack, tracing off", "stack", path),
        ],
    )


# What a valid bearer token costs on the same read: the stack with AUTH__MODE=oidc (a local
# OpenID provider) against the stack without authentication; with the verified-token cache
# (a client reusing its token), and without it (every request checked in full).
def auth_cases(path: str) -> tuple[str, list[tuple[str, str, str]]]:
    return (
        f"GET {path.replace('/1', '/{id}')}, bearer token",
        [
            ("stack, AUTH__MODE=oidc, a valid token", "authed", path),
            ("the same, AUTH__TOKEN_CACHE_SIZE=0", "authed_uncached", path),
            ("stack, AUTH__MODE=none", "stack", path),
        ],
    )


def servers(
    env: dict[str, str], collector: str, provider: Provider
) -> list[tuple[str, str, dict[str, str]]]:
    """(name, app, environment) of each server the cases use."""
    traced = env | {"OTEL_EXPORTER_OTLP_ENDPOINT": collector}
    authed = env | {
        "AUTH__MODE": "oidc",
        "AUTH__ISSUER": provider.issuer,
        "AUTH__CA_FILE": str(provider.ca_file),
        "AUTH__AUDIENCE": AUDIENCE,
    }
    return [
        ("stack", "lab.stack_app:app", env),
        ("bare", "lab.bare_app:app", env),
        ("traced_all", "lab.stack_app:app", traced | {"OTEL_TRACES_SAMPLER": "always_on"}),
        ("traced_default", "lab.stack_app:app", traced),
        ("authed", "lab.stack_app:app", authed),
        ("authed_uncached", "lab.stack_app:app", authed | {"AUTH__TOKEN_CACHE_SIZE": "0"}),
    ]


def has_example() -> bool:
    return (ROOT / "app" / "items").is_dir()


def prepare_database(cluster: PgCluster, env: dict[str, str]) -> None:
    """Migrate, and one row to read (id 1): in the bench's table, and the example's."""
    # Five servers of 2 workers hold up to 110 connections at once (the bare app's pools are
    # SQLAlchemy's 5 + 10): more than PostgreSQL's default 100 minus the reserved ones.
    cluster.psql("ALTER SYSTEM SET max_connections = 200")
    cluster.stop()
    cluster.start()
    migrate(env)
    cluster.psql(f"{CREATE}; ALTER TABLE bench_rows OWNER TO {APP_USER}", database="app")
    if has_example():
        cluster.psql(
            "INSERT INTO items (name, description) VALUES ('bench', 'one row')", database="app"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--seconds", type=int, default=4)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--quick", action="store_true", help="one short round: shows it runs")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.seconds = 1, 1
    for tool in ("wrk", "taskset"):
        if shutil.which(tool) is None:
            print(f"`{tool}` is missing: apt-get install wrk util-linux", file=sys.stderr)
            return 2

    workdir = Path(tempfile.mkdtemp(prefix="app-bench-"))
    workdir.chmod(0o755)
    cluster = PgCluster.create(workdir / "pg")
    running: dict[str, Running] = {}
    # The receiver's thread shares wrk's core, not the servers' (threads inherit affinity).
    os.sched_setaffinity(0, {0})
    try:
        with otlp_sink() as sink, openid_provider() as provider:
            # A quick run shows each comparison runs: one worker per server is enough.
            env = bench_env(cluster) | ({"WEB_CONCURRENCY": "1"} if args.quick else {})
            prepare_database(cluster, env)
            for name, app, server_env in servers(env, sink.endpoint, provider):
                log = workdir / f"{name}.log"
                running[name] = launch(gunicorn_command(app), server_env, log)
            for server in running.values():
                wait_up(server, "/bench/rows/1")
            targets = {name: server.port for name, server in running.items()}
            masters = {name: server.process.pid for name, server in running.items()}
            token = provider.token(scope="items:read bench:read", lifetime=3600)
            bearer = {"Authorization": f"Bearer {token}"}
            headers = {"authed": bearer, "authed_uncached": bearer}
            status = run_rounds(args, targets, masters, headers)
            print(
                f"\nThe tracing rows' receiver took {sink.exports:,} exports "
                f"({sink.received_bytes / 1e6:,.1f} MB of spans)."
            )
            return status
    finally:
        for server in running.values():
            stop(server)
        cluster.destroy()
        shutil.rmtree(workdir, ignore_errors=True)


def run_rounds(
    args: argparse.Namespace,
    targets: dict[str, int],
    masters: dict[str, int],
    headers: dict[str, dict[str, str]],
) -> int:
    """Warm-up, then the interleaved rounds; prints the table."""
    read = "/api/v1/items/1" if has_example() else "/bench/rows/1"
    all_cases = CASES | (dict([EXAMPLE_READ]) if has_example() else {})
    all_cases |= dict([tracing_cases(read), auth_cases(read)])
    for cases in all_cases.values() if not args.quick else ():  # warm-up: pools filled,
        for _, server, path in cases:  # first-request costs paid
            url = f"http://127.0.0.1:{targets[server]}{path}"
            wrk(url, seconds=2, connections=args.connections, headers=headers.get(server))

    samples: dict[tuple[str, str], list[Sample]] = {}
    for round_no in range(args.rounds):
        for endpoint, cases in all_cases.items():
            # Alternate which case goes first from round to round.
            for label, server, path in cases if round_no % 2 == 0 else cases[::-1]:
                sample = wrk(
                    f"http://127.0.0.1:{targets[server]}{path}",
                    seconds=args.seconds,
                    connections=args.connections,
                    master=masters[server],
                    headers=headers.get(server),
                )
                samples.setdefault((endpoint, label), []).append(sample)
        print(f"round {round_no + 1}/{args.rounds} done", file=sys.stderr, flush=True)
    return report(all_cases, samples, args)


def report(
    cases_by_endpoint: dict[str, list[tuple[str, str, str]]],
    samples: dict[tuple[str, str], list[Sample]],
    args: argparse.Namespace,
) -> int:
    print(
        f"\nwrk -t1 -c{args.connections}, {args.rounds} interleaved rounds of {args.seconds} s, "
        "2 Gunicorn workers each (server on CPU 1, wrk on CPU 0); medians over rounds\n"
    )
    print(f"| endpoint | server | {HEADER.format(baseline='the last row')} |")
    print(f"|---|---|{ALIGN}|")
    failures = False
    for endpoint, cases in cases_by_endpoint.items():
        baseline = samples[(endpoint, cases[-1][0])]
        for label, _, _ in cases:
            runs = samples[(endpoint, label)]
            failures |= failed(runs)
            print(f"| {endpoint} | {label} | {cells(runs, baseline)} |")
    return verdict(failures)


if __name__ == "__main__":
    sys.exit(main())
