"""The template's second comparison: the process manager's cost, worker counts, memory and
recycling (`make bench` in the template repository; lab/README.md).

1. Gunicorn + our Uvicorn worker vs `uvicorn --workers 2` on the same app and settings
   (interleaved rounds, median of the per-round ratios; target >= 0.95).
2. Requests/s on /health with 1, 2 and 4 workers (server not pinned: it may use both cores).
3. Worker RSS after 20 000 and after 100 000 requests of a mixed load (target: growth < 5 %).
4. Recycling: SIGHUP reloads and `max_requests` recycles under wrk, keep-alive and a new
   connection per request, with uvicorn_worker's UvicornWorker (before) and app.worker.Worker
   (after): failed requests as wrk counts them (socket errors and non-2xx).
5. Slow clients: /health with the header-read deadline on against off (target >= 0.97), and
   /health while 1,000 clients trickle their request heads against idle (target >= 0.80),
   with the workers' memory in both.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from bench.server import bench_env, gunicorn_command, serving
from bench.table import ALIGN, HEADER, cells
from bench.wrk import Sample, wrk
from devtools.pgcluster import PgCluster
from lab.compare import prepare_database

PLAIN_WORKER = "uvicorn_worker.UvicornWorker"
OUR_WORKER = "app.worker.Worker"
STACK_APP = "lab.stack_app:app"
UP_WHEN = "/bench/rows/1"
# One request in four for each: liveness, readiness (pool status), a row, a page of rows.
MIXED_LUA = """
local paths = {"/health", "/ready", "/bench/rows/1"}
local i = 0
request = function()
  i = i % #paths + 1
  return wrk.format("GET", paths[i])
end
"""


def uvicorn_command(workers: int) -> list[str]:
    # uvicorn's own process manager, with what our worker class sets (app/worker.py).
    return [
        "taskset",
        "-c",
        "1",
        sys.executable,
        "-m",
        "uvicorn",
        STACK_APP,
        "--host=127.0.0.1",
        "--port={port}",
        f"--workers={workers}",
        "--loop=uvloop",
        "--http=httptools",
        "--no-access-log",
        "--no-server-header",
        "--log-level=warning",
    ]


def workers_of(master: int) -> list[int]:
    found = subprocess.run(
        ["pgrep", "-P", str(master)], capture_output=True, text=True, check=False
    )
    return [int(pid) for pid in found.stdout.split()]


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def process_manager(env: dict[str, str], work: Path, rounds: int, seconds: float) -> list[str]:
    """Gunicorn + our worker vs uvicorn --workers N (WEB_CONCURRENCY, 2), /health and a row."""
    workers = int(env["WEB_CONCURRENCY"])
    lines = ["| endpoint | server | req/s | p99 ms | errors | ratio gunicorn / uvicorn |"]
    lines.append("|---|---|---:|---:|---:|---:|")
    env = env | {"PROMETHEUS_MULTIPROC_DIR": tempfile.mkdtemp(dir=work)}
    commands = {
        "gunicorn + app.worker.Worker": gunicorn_command(STACK_APP),
        f"uvicorn --workers {workers}": uvicorn_command(workers),
    }
    gunicorn, uvicorn = commands.values()
    with (
        serving(gunicorn, env, work / "pm-g.log", up_when=UP_WHEN) as gun,
        serving(uvicorn, env, work / "pm-u.log", up_when=UP_WHEN) as uvi,
    ):
        urls = dict(zip(commands, (gun.url, uvi.url), strict=True))
        for path in ("/health", "/bench/rows/1"):
            samples: dict[str, list[Sample]] = {name: [] for name in commands}
            for name in commands:  # warm-up
                wrk(urls[name] + path, seconds=min(2, seconds), connections=64)
            for round_no in range(rounds):
                order = list(commands) if round_no % 2 == 0 else list(reversed(commands))
                for name in order:
                    samples[name].append(wrk(urls[name] + path, seconds=seconds, connections=64))
            first, second = commands
            ratios = [a.rps / b.rps for a, b in zip(samples[first], samples[second], strict=True)]
            for name, runs in samples.items():
                ratio = (
                    f"**{statistics.median(ratios):.2f}** ({min(ratios):.2f}-{max(ratios):.2f})"
                    if name == first
                    else ""
                )
                lines.append(
                    f"| {path} | {name} | {statistics.median(s.rps for s in runs):,.0f} "
                    f"| {statistics.median(s.p99_ms for s in runs):.2f} "
                    f"| {sum(s.errors for s in runs)} | {ratio} |"
                )
    return lines


def worker_counts(
    env: dict[str, str], work: Path, rounds: int, seconds: float, counts: Sequence[int]
) -> list[str]:
    lines = ["| workers | /health req/s | p99 ms | errors |", "|---:|---:|---:|---:|"]
    for count in counts:
        log = work / f"wc-{count}.log"
        command = gunicorn_command(STACK_APP, cpus=None)
        with serving(command, env | {"WEB_CONCURRENCY": str(count)}, log, up_when=UP_WHEN) as up:
            wrk(f"{up.url}/health", seconds=min(2, seconds), connections=64)
            runs = [wrk(f"{up.url}/health", seconds=seconds, connections=64) for _ in range(rounds)]
        lines.append(
            f"| {count} | {statistics.median(s.rps for s in runs):,.0f} "
            f"| {statistics.median(s.p99_ms for s in runs):.2f} | {sum(s.errors for s in runs)} |"
        )
    return lines


def memory(env: dict[str, str], work: Path, targets: Sequence[int], seconds: float) -> list[str]:
    """RSS of each worker after the first and second target count of the mixed load."""
    script = work / "mixed.lua"
    script.write_text(MIXED_LUA)
    env = env | {"SERVER__MAX_REQUESTS": "0"}
    header = f"| requests | worker RSS MiB (each) | growth since {targets[0]:,} |"
    lines = [header, "|---:|---|---:|"]
    command = gunicorn_command(STACK_APP, cpus=None)
    with serving(command, env, work / "mem.log", up_when=UP_WHEN) as running:
        pids = workers_of(running.process.pid)
        done, baseline = 0, 0.0
        for target in targets:
            while done < target:
                sample = wrk(running.url, seconds=seconds, connections=32, script=script)
                done += sample.requests
                if sample.errors:
                    raise RuntimeError(f"errors during the memory run: {sample}")
            sizes = [rss_mib(pid) for pid in pids]
            total = sum(sizes)
            baseline = baseline or total
            growth = (total - baseline) / baseline * 100
            each = ", ".join(f"{size:.1f}" for size in sizes)
            lines.append(f"| {done:,} | {each} | {growth:+.1f} % |")
        if workers_of(running.process.pid) != pids:
            raise RuntimeError("a worker was replaced during the memory run")
    return lines


def _signal_every(process: subprocess.Popen[bytes], every: float, stop: threading.Event) -> None:
    while not stop.wait(every):
        process.send_signal(signal.SIGHUP)


def recycling(
    env: dict[str, str], work: Path, seconds: float, variants: Sequence[tuple[str, bool]]
) -> list[str]:
    lines = [
        "| event | worker class | clients | requests | failed | p50 ms | p99 ms | reboots |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    # max_requests: each worker recycles every ~6-12 s here, several times a run, and the jitter
    # (as large as the limit) keeps both from rebooting at once (a boot takes ~1.8 s here).
    events = {"SIGHUP every 4 s": seconds, "max_requests 6000 (+0-6000)": 2 * seconds}
    for event, duration in events.items():
        for worker, close in variants:
            extra = env | (
                {"SERVER__MAX_REQUESTS": "6000", "SERVER__MAX_REQUESTS_JITTER": "6000"}
                if event.startswith("max")
                else {"SERVER__MAX_REQUESTS": "0"}
            )
            log = work / "recycle.log"
            log.write_text("")
            command = gunicorn_command(STACK_APP, "-k", worker, cpus=None)
            with serving(command, extra, log, up_when=UP_WHEN) as running:
                stop = threading.Event()
                sender = threading.Thread(target=_signal_every, args=(running.process, 4.0, stop))
                if event.startswith("SIGHUP"):
                    sender.start()
                try:
                    sample = wrk(
                        f"{running.url}/health", seconds=duration, connections=16, close=close
                    )
                finally:
                    stop.set()
                    if sender.is_alive():
                        sender.join()
            boots = log.read_text().count("Booting worker") - int(env["WEB_CONCURRENCY"])
            clients = "new connection each" if close else "keep-alive"
            lines.append(
                f"| {event} | {worker} | {clients} | {sample.requests:,} "
                f"| {sample.errors} | {sample.p50_ms:.1f} | {sample.p99_ms:.0f} | {boots} |"
            )
    return lines


TRICKLERS = 1000


def slow_clients(env: dict[str, str], work: Path, rounds: int, seconds: float) -> list[str]:
    """The header-read deadline's cost, and /health's throughput under slow clients."""
    off = env | {"SERVER__HEADER_TIMEOUT_SECONDS": "0"}
    runs: dict[str, list[Sample]] = {"on": [], "off": [], "trickled": []}
    rss: dict[str, float] = {}
    with (
        serving(gunicorn_command(STACK_APP), env, work / "sc-on.log", up_when=UP_WHEN) as on,
        serving(gunicorn_command(STACK_APP), off, work / "sc-off.log", up_when=UP_WHEN) as bare,
    ):
        servers = {"on": on, "off": bare, "trickled": on}
        for round_no in range(rounds):
            for name in (
                ("on", "off", "trickled") if round_no % 2 == 0 else ("off", "on", "trickled")
            ):
                server = servers[name]
                with trickling(server.port) if name == "trickled" else contextlib.nullcontext():
                    runs[name].append(
                        wrk(
                            f"{server.url}/health",
                            seconds=seconds,
                            connections=64,
                            master=server.process.pid,
                        )
                    )
                    rss[name] = sum(rss_mib(pid) for pid in workers_of(server.process.pid))
    rows = [
        ("deadline on (the default)", "on", "off"),
        ("deadline off (SERVER__HEADER_TIMEOUT_SECONDS=0)", "off", "off"),
        (f"deadline on, {TRICKLERS:,} clients trickling heads", "trickled", "on"),
    ]
    lines = [
        f"| case | workers' RSS MiB | {HEADER.format(baseline='the ratio column names')} |",
        f"|---|---:|{ALIGN}|",
    ]
    for label, name, baseline in rows:
        versus = {"off": " (vs off)", "on": " (vs idle)"}[baseline] if name != baseline else ""
        lines.append(f"| {label}{versus} | {rss[name]:.1f} | {cells(runs[name], runs[baseline])} |")
    return lines


@contextmanager
def trickling(port: int) -> Iterator[None]:
    """TRICKLERS clients sending heads a byte every 0.5 s (on wrk's core), for the block."""
    command = ["taskset", "-c", "0", sys.executable, "-m", "lab.trickle", str(port)]
    process = subprocess.Popen([*command, str(TRICKLERS), "0.5"])
    try:
        time.sleep(2)  # the connections opened and their first bytes sent: a steady state
        yield
    finally:
        process.terminate()
        process.wait(timeout=10)


ALL_VARIANTS = [(worker, close) for worker in (PLAIN_WORKER, OUR_WORKER) for close in (False, True)]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=4)
    parser.add_argument("--recycle-seconds", type=float, default=12)
    parser.add_argument("--memory-requests", type=int, nargs=2, default=[20_000, 100_000])
    parser.add_argument(
        "--only",
        choices=("manager", "workers", "memory", "recycling", "slow-clients"),
        action="append",
    )
    parser.add_argument(
        "--quick", action="store_true", help="each part once, briefly, one variant: shows it runs"
    )
    args = parser.parse_args(argv)
    counts: Sequence[int] = (1, 2, 4)
    variants, memory_seconds, workers = ALL_VARIANTS, 5.0, "2"
    if args.quick:  # each part once, with one worker: shows it runs
        args.rounds, args.seconds, args.recycle_seconds = 1, 1, 1
        args.memory_requests = [1000, 2000]
        counts, variants, memory_seconds, workers = (1,), [(OUR_WORKER, False)], 1.0, "1"
    parts = args.only or ["manager", "workers", "memory", "recycling", "slow-clients"]
    # Room for the slow clients' connections, here and in the servers started from here.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4 * TRICKLERS)), hard))
    work = Path(tempfile.mkdtemp(prefix="app-bench-server-"))
    work.chmod(0o755)
    cluster = PgCluster.create(work / "pg")
    try:
        env = bench_env(cluster) | {"WEB_CONCURRENCY": workers}
        prepare_database(cluster, env)
        if "manager" in parts:
            print(f"\n## Process manager: Gunicorn + Uvicorn worker vs uvicorn --workers {workers}")
            print(f"(both on CPU 1, wrk -c64 on CPU 0, {args.rounds} interleaved rounds)\n")
            print("\n".join(process_manager(env, work, args.rounds, args.seconds)), flush=True)
        if "workers" in parts:
            print("\n## Requests/s by worker count (server on both cores, wrk -c64 on CPU 0)\n")
            table = worker_counts(env, work, args.rounds, args.seconds, counts)
            print("\n".join(table), flush=True)
        if "memory" in parts:
            print("\n## Worker memory (/health, /ready, a row, a page of rows; no recycling)\n")
            print("\n".join(memory(env, work, args.memory_requests, memory_seconds)), flush=True)
        if "recycling" in parts:
            print("\n## Reloads and recycling under wrk -c16 on /health (wrk on CPU 0)")
            print("(failed = wrk socket errors + non-2xx; reboots = workers booted after start)\n")
            print("\n".join(recycling(env, work, args.recycle_seconds, variants)), flush=True)
        if "slow-clients" in parts:
            print("\n## Slow clients: the header-read deadline (wrk -c64 on /health, CPU 0)\n")
            print("\n".join(slow_clients(env, work, args.rounds, args.seconds)), flush=True)
    finally:
        cluster.destroy()
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
