"""`make bench`: the full stack against a bare app, same Gunicorn config, interleaved rounds.

Starts a throwaway PostgreSQL (TLS on) with one row to read, the service with one bench route
(`bench.stack_app:app`, production settings, JSON logs to a file; the example domain's read
too when the service has it) and the bare app (`bench.bare_app:app`), both with 2 workers and
pinned to one core while wrk runs on the other (docs/facts.md: benchmarks). Each
round runs every (endpoint, server) pair once, in alternating order; the table gives medians
over the rounds and the median of the per-round ratios stack / bare. Any non-2xx response or
socket error is reported and makes the run fail.

The tracing rows serve the same stack twice more with tracing on, exporting to a local OTLP
receiver (`bench/otlp_sink.py`): every request sampled, and the default ratio; their ratios are
against the stack with tracing off. The bearer-token rows serve it twice more with
AUTH__MODE=oidc and a local OpenID provider, every request carrying a valid token: with the
verified-token cache, and without it.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.otlp_sink import otlp_sink
from bench.rows import CREATE
from devtools.oidc_provider import AUDIENCE, Provider, openid_provider
from devtools.pgcluster import APP_USER, PgCluster, free_port

ROOT = Path(__file__).resolve().parent.parent
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
        "AUTH__AUDIENCE": AUDIENCE,
    }
    return [
        ("stack", "bench.stack_app:app", env),
        ("bare", "bench.bare_app:app", env),
        ("traced_all", "bench.stack_app:app", traced | {"OTEL_TRACES_SAMPLER": "always_on"}),
        ("traced_default", "bench.stack_app:app", traced),
        ("authed", "bench.stack_app:app", authed),
        ("authed_uncached", "bench.stack_app:app", authed | {"AUTH__TOKEN_CACHE_SIZE": "0"}),
    ]


@dataclass
class Sample:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    requests: int = 0
    cpu_us_per_request: float = 0.0  # server CPU (all workers), from /proc: robust to noise


def _ms(value: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", value).groups()  # type: ignore[union-attr]
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def parse_wrk(output: str) -> Sample:
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", output, re.M).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", output, re.M).group(1))  # type: ignore[union-attr]
    errors = 0
    if match := re.search(r"Non-2xx or 3xx responses: (\d+)", output):
        errors += int(match.group(1))
    if match := re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    ):
        errors += sum(int(n) for n in match.groups())
    requests = int(re.search(r"(\d+) requests in", output).group(1))  # type: ignore[union-attr]
    return Sample(rps, p50, p99, errors, requests)


def cpu_seconds(master: int) -> float:
    """User + system CPU of a Gunicorn master's workers (their children), in seconds."""
    ticks = os.sysconf("SC_CLK_TCK")
    children = subprocess.run(
        ["pgrep", "-P", str(master)], capture_output=True, text=True, check=False
    )
    total = 0
    for pid in children.stdout.split():
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


def wrk(
    url: str,
    *,
    seconds: int,
    connections: int,
    master: int | None = None,
    headers: dict[str, str] | None = None,
) -> Sample:
    command = [
        "taskset",
        "-c",
        "0",
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{seconds}s",
        "--latency",
        # A slow answer is not a failed one: wrk's 2 s default counts it as a socket error.
        "--timeout",
        "10s",
        *[f"--header={name}: {value}" for name, value in (headers or {}).items()],
        url,
    ]
    before = cpu_seconds(master) if master else 0.0
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    sample = parse_wrk(result.stdout)
    if master and sample.requests:
        sample.cpu_us_per_request = (cpu_seconds(master) - before) / sample.requests * 1e6
    return sample


def start_server(app: str, env: dict[str, str], log: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    env = env | {"PORT": str(port)}
    handle = log.open("wb")
    process = subprocess.Popen(
        ["taskset", "-c", "1", sys.executable, "-m", "gunicorn", "-c", "gunicorn_conf.py", app],
        cwd=ROOT,
        env=env,
        stdout=handle,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            # Up and serving: 200, or 401 where a token is required.
            if httpx.get(f"http://127.0.0.1:{port}/bench/rows/1", timeout=1).status_code < 500:
                return process, port
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"{app} did not start; see {log}")


def bench_env(cluster: PgCluster) -> dict[str, str]:
    """Production settings against the throwaway cluster; nothing of the caller's app config."""
    return {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(
            ("APP_", "DB__", "HTTP__", "LOG__", "SERVER__", "PROBES__", "OTEL_", "AUTH__")
        )
    } | {
        "APP_ENV": "production",
        "DATABASE_URL": cluster.url(),
        "DB__SSLMODE": "verify-full",
        "DB__SSLROOTCERT": str(cluster.ca_file),
        "HTTP__ALLOWED_HOSTS": "127.0.0.1,localhost",
        "AUTH__MODE": "none",
        "HOST": "127.0.0.1",
        "WEB_CONCURRENCY": "2",
        # Steady state: no worker recycling in the middle of a round (bench.server measures it).
        "SERVER__MAX_REQUESTS": "0",
    }


def has_example() -> bool:
    return (ROOT / "app" / "items").is_dir()


def prepare_database(cluster: PgCluster, env: dict[str, str]) -> None:
    """Migrate, and one row to read (id 1): in the bench's table, and the example's."""
    # Five servers of 2 workers hold up to 110 connections at once (the bare app's pools are
    # SQLAlchemy's 5 + 10): more than PostgreSQL's default 100 minus the reserved ones.
    cluster.psql("ALTER SYSTEM SET max_connections = 200")
    cluster.stop()
    cluster.start()
    subprocess.run(
        [sys.executable, "-m", "alembic", "upgrade", "head"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
    )
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
    args = parser.parse_args()
    for tool in ("wrk", "taskset"):
        if shutil.which(tool) is None:
            print(f"`{tool}` is missing: apt-get install wrk util-linux", file=sys.stderr)
            return 2

    workdir = Path(tempfile.mkdtemp(prefix="app-bench-"))
    workdir.chmod(0o755)
    cluster = PgCluster.create(workdir / "pg")
    running: list[subprocess.Popen[bytes]] = []
    # The receiver's thread shares wrk's core, not the servers' (threads inherit affinity).
    os.sched_setaffinity(0, {0})
    try:
        with otlp_sink() as sink, openid_provider() as provider:
            env = bench_env(cluster)
            prepare_database(cluster, env)
            targets: dict[str, int] = {}
            masters: dict[str, int] = {}
            for name, app, server_env in servers(env, sink.endpoint, provider):
                process, port = start_server(app, server_env, workdir / f"{name}.log")
                running.append(process)
                targets[name] = port
                masters[name] = process.pid
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
        for process in running:
            process.terminate()
        for process in running:
            process.wait(timeout=30)
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
    for cases in all_cases.values():  # warm-up: pools filled, first-request costs paid
        for _, server, path in cases:
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
    print(
        "| endpoint | server | req/s | p50 ms | p99 ms | server CPU us/req | errors "
        "| req/s vs the last row (median of per-round ratios) |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    failed = False
    for endpoint, cases in cases_by_endpoint.items():
        baseline = samples[(endpoint, cases[-1][0])]
        for label, _, _ in cases:
            runs = samples[(endpoint, label)]
            errors = sum(s.errors for s in runs)
            failed |= errors > 0
            ratios = [s.rps / b.rps for s, b in zip(runs, baseline, strict=True)]
            ratio = (
                f"**{statistics.median(ratios):.2f}** (rounds {min(ratios):.2f}-{max(ratios):.2f})"
                if runs is not baseline
                else ""
            )
            print(
                f"| {endpoint} | {label} | {statistics.median(s.rps for s in runs):,.0f} "
                f"| {statistics.median(s.p50_ms for s in runs):.2f} "
                f"| {statistics.median(s.p99_ms for s in runs):.2f} "
                f"| {statistics.median(s.cpu_us_per_request for s in runs):.0f} "
                f"| {errors} | {ratio} |"
            )
    if failed:
        print("\nFAILED: the load generator saw errors (non-2xx or socket errors).")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
