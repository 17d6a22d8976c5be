"""`make bench`, idempotency keys: what a key costs a POST, and what a replay costs.

Each write is measured without a key, with a new key each request (claimed, and its answer
stored in the request's transaction), and as replays of one key already answered (no write),
served by the production command, in interleaved wrk rounds. Ratios are against the same POST
without a key, in the same round.
"""

from __future__ import annotations

import statistics
import sys
import uuid
from pathlib import Path

import httpx

from bench.idempotency_app import TABLES
from bench.server import bench_env, gunicorn_command, options, serving, throwaway_database
from bench.table import ALIGN, HEADER, cells, failed, verdict
from bench.wrk import Sample, wrk

CONNECTIONS = 64
SCRIPT = Path(__file__).with_name("keyed_post.lua")
MODES = ("none", "new", "replay")
# (what it is, path, body: "named" carries a name, "nothing" is `{}`)
WRITES = [
    ("one row", "/bench/keyed-writes", "nothing"),
    # example-only
    ("an item, as the example creates one", "/api/v1/items", "named"),
    # /example-only
]


def measure(url: str, master: int | None, seconds: float, mode: str, body: str) -> Sample:
    # A new prefix each run: no key of a "new" run was seen before; one key per path to replay.
    prefix = f"replay-{body}" if mode == "replay" else uuid.uuid4().hex[:12]
    return wrk(
        url,
        seconds=seconds,
        connections=CONNECTIONS,
        master=master,
        script=SCRIPT,
        script_args=[mode, prefix, body],
    )


def answer_the_replayed_keys(base_url: str) -> None:
    """The first request of each key the replay rounds send, so they only replay."""
    for _, path, body in WRITES:
        key = f"replay-{body}"
        # Byte for byte what keyed_post.lua sends: the body is part of the request's fingerprint.
        data = f'{{"name": "bench {key}"}}' if body == "named" else "{}"
        headers = {"Idempotency-Key": f'"{key}"', "Content-Type": "application/json"}
        httpx.post(base_url + path, content=data, headers=headers).raise_for_status()


def cases() -> list[tuple[str, str, str]]:
    return [(path, mode, body) for _, path, body in WRITES for mode in MODES]


def costs(env: dict[str, str], log: Path, count: int, seconds: float) -> tuple[list[str], bool]:
    samples: dict[tuple[str, str, str], list[Sample]] = {case: [] for case in cases()}
    app = gunicorn_command("bench.idempotency_app:create_bench_app()")
    with serving(app, env, log) as server:
        answer_the_replayed_keys(server.url)
        for path, mode, body in samples:  # pools filled, first-request costs paid
            measure(server.url + path, None, 1, mode, body)
        for number in range(count):
            for path, mode, body in samples if number % 2 == 0 else reversed(samples):
                sample = measure(server.url + path, server.process.pid, seconds, mode, body)
                samples[(path, mode, body)].append(sample)
    lines = [
        f"| write | {HEADER.format(baseline='the same POST without a key')} |",
        f"|---|{ALIGN}|",
    ]
    replays: list[str] = []
    for label, path, body in WRITES:
        alone, keyed, replay = (samples[(path, mode, body)] for mode in MODES)
        lines.append(f"| {label}: `POST {path}`, no key | {cells(alone, alone)} |")
        lines.append(f"| {label}, a new key each request | {cells(keyed, alone)} |")
        lines.append(f"| {label}, replays of an answered key | {cells(replay, alone)} |")
        ratios = [r.rps / k.rps for r, k in zip(replay, keyed, strict=True)]
        replays.append(
            f"- {label}: a replay answers at **{statistics.median(ratios):.2f}** times the "
            f"rate of the first request with a key (rounds {min(ratios):.2f}-{max(ratios):.2f})"
        )
    return [*lines, "", *replays], any(failed(runs) for runs in samples.values())


def main() -> int:
    args = options(__doc__.splitlines()[0])
    count, seconds = (1, 1) if args.quick else (args.rounds, args.seconds)
    with throwaway_database("keys", TABLES) as (cluster, work):
        table, failures = costs(bench_env(cluster), work / "gunicorn.log", count, seconds)
    print(
        f"\nIdempotency keys: wrk -t1 -c{CONNECTIONS}, {count} interleaved rounds of {seconds} s, "
        "2 Gunicorn workers (server on CPU 1, wrk on CPU 0); medians over the rounds\n"
    )
    print("\n".join(table) + "\n")
    return verdict(failures)


if __name__ == "__main__":
    sys.exit(main())
