"""`make bench`: requests/s and latency of this service's endpoints, served as in production.

Starts a throwaway PostgreSQL (TLS on), migrates it, serves the service with its production
command (`gunicorn -c gunicorn_conf.py app.main:app`, production settings, 2 workers on CPU 1)
and runs wrk on CPU 0 against each of ENDPOINTS in interleaved rounds. The table gives medians
over the rounds, the server's CPU per request, and each endpoint's requests/s against
`/health`'s in the same round: `/health` is the cheapest answer through the same stack, so the
ratio is what the endpoint's own work costs. A non-2xx answer or a socket error fails the run.

What is measured: bench/endpoints.py, where a domain adds its reads.
"""

from __future__ import annotations

import shutil
import sys

import httpx

from bench.endpoints import ENDPOINTS, SEED
from bench.server import bench_env, gunicorn_command, options, serving, throwaway_database
from bench.table import ALIGN, HEADER, cells, failed, verdict
from bench.wrk import Sample, wrk

CONNECTIONS = 64


def rounds(base_url: str, master: int, count: int, seconds: float) -> dict[str, list[Sample]]:
    """`count` rounds over ENDPOINTS, in alternating order from round to round."""
    samples: dict[str, list[Sample]] = {path: [] for _, path in ENDPOINTS}
    for number in range(count):
        for _, path in ENDPOINTS if number % 2 == 0 else ENDPOINTS[::-1]:
            sample = wrk(base_url + path, seconds=seconds, connections=CONNECTIONS, master=master)
            samples[path].append(sample)
        print(f"round {number + 1}/{count} done", file=sys.stderr, flush=True)
    return samples


def table(samples: dict[str, list[Sample]]) -> tuple[list[str], bool]:
    """The Markdown table, and whether any request failed."""
    lines = [
        f"| endpoint | path | {HEADER.format(baseline='/health')} |",
        f"|---|---|{ALIGN}|",
    ]
    baseline = samples[ENDPOINTS[0][1]]
    for label, path in ENDPOINTS:
        lines.append(f"| {label} | `{path}` | {cells(samples[path], baseline)} |")
    return lines, any(failed(runs) for runs in samples.values())


def main() -> int:
    args = options(__doc__.splitlines()[0])
    count, seconds, warm_up = (1, 1, 1) if args.quick else (args.rounds, args.seconds, 2)
    for tool in ("wrk", "taskset"):
        if shutil.which(tool) is None:
            print(f"`{tool}` is missing: apt-get install wrk util-linux", file=sys.stderr)
            return 2
    with (
        throwaway_database("endpoints") as (cluster, work),
        serving(gunicorn_command(), bench_env(cluster), work / "gunicorn.log") as server,
    ):
        for path, body in SEED:
            httpx.post(server.url + path, json=body).raise_for_status()
        for _, path in ENDPOINTS:  # pools filled, first-request costs paid
            wrk(server.url + path, seconds=warm_up, connections=CONNECTIONS)
        samples = rounds(server.url, server.process.pid, count, seconds)
    lines, failed = table(samples)
    print(
        f"\nwrk -t1 -c{CONNECTIONS}, {count} interleaved rounds of {seconds} s, 2 Gunicorn "
        "workers (server on CPU 1, wrk on CPU 0); medians over the rounds\n"
    )
    print("\n".join(lines))
    return verdict(failed)


if __name__ == "__main__":
    sys.exit(main())
