"""`make bench`, second part: the process manager's cost, worker counts, memory and recycling.

1. Gunicorn + our Uvicorn worker vs `uvicorn --workers 2` on the same app and settings
   (interleaved rounds, median of the per-round ratios; target >= 0.95).
2. Requests/s on /health with 1, 2 and 4 workers (server not pinned: it may use both cores).
3. Worker RSS after 20 000 and after 100 000 requests of a mixed load (target: growth < 5 %).
4. Recycling: SIGHUP reloads and `max_requests` recycles under wrk, keep-alive and a new
   connection per request, with uvicorn_worker's UvicornWorker (before) and app.worker.Worker
   (after): failed requests as wrk counts them (socket errors and non-2xx).
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.run import ROOT, Sample, bench_env, parse_wrk, prepare_database
from devtools.pgcluster import PgCluster, free_port

PLAIN_WORKER = "uvicorn_worker.UvicornWorker"
OUR_WORKER = "app.worker.Worker"
# One request in four for each: liveness, readiness (pool status), a row, a page of rows.
MIXED_LUA = """
local paths = {"/health", "/ready", "/bench/rows/1"}
local i = 0
request = function()
  i = i % #paths + 1
  return wrk.format("GET", paths[i])
end
"""


@dataclass
class Running:
    process: subprocess.Popen[bytes]
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def _wait_up(running: Running, log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{running.url}/bench/rows/1", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    running.process.kill()
    raise RuntimeError(f"server did not start; see {log}")


@contextmanager
def serve(command: Sequence[str], env: dict[str, str], log: Path) -> Iterator[Running]:
    port = free_port()
    with log.open("ab") as handle:
        process = subprocess.Popen(
            [part.replace("{port}", str(port)) for part in command],
            cwd=ROOT,
            env=env | {"PORT": str(port)},
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
    running = Running(process, port)
    try:
        _wait_up(running, log)
        yield running
    finally:
        process.terminate()
        process.wait(timeout=60)


def gunicorn_command(*extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "gunicorn",
        "-c",
        "gunicorn_conf.py",
        *extra,
        "bench.stack_app:app",
    ]


def uvicorn_command(workers: int) -> list[str]:
    # uvicorn's own process manager, with what our worker class sets (app/worker.py).
    return [
        sys.executable,
        "-m",
        "uvicorn",
        "bench.stack_app:app",
        "--host=127.0.0.1",
        "--port={port}",
        f"--workers={workers}",
        "--loop=uvloop",
        "--http=httptools",
        "--no-access-log",
        "--no-server-header",
        "--log-level=warning",
    ]


def wrk(
    url: str, seconds: float, connections: int, *, script: Path | None = None, close: bool = False
) -> Sample:
    command = ["taskset", "-c", "0", "wrk", "-t1", f"-c{connections}", f"-d{round(seconds)}s"]
    # A slow answer is not a lost one: wrk's 2 s default would count a worker boot as failures.
    command += ["--latency", "--timeout", "10s"]
    if script:
        command += ["-s", str(script)]
    if close:
        command += ["-H", "Connection: close"]
    result = subprocess.run([*command, url], capture_output=True, text=True, check=True)
    return parse_wrk(result.stdout)


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
    """Gunicorn + our worker vs uvicorn --workers 2, on /health and a row read."""
    lines = ["| endpoint | server | req/s | p99 ms | errors | ratio gunicorn / uvicorn |"]
    lines.append("|---|---|---:|---:|---:|---:|")
    env = env | {"PROMETHEUS_MULTIPROC_DIR": tempfile.mkdtemp(dir=work)}
    commands = {
        "gunicorn + app.worker.Worker": ["taskset", "-c", "1", *gunicorn_command()],
        "uvicorn --workers 2": ["taskset", "-c", "1", *uvicorn_command(2)],
    }
    with (
        serve(commands["gunicorn + app.worker.Worker"], env, work / "pm-g.log") as gun,
        serve(commands["uvicorn --workers 2"], env, work / "pm-u.log") as uvi,
    ):
        urls = dict(zip(commands, (gun.url, uvi.url), strict=True))
        for path in ("/health", "/bench/rows/1"):
            samples: dict[str, list[Sample]] = {name: [] for name in commands}
            for name in commands:  # warm-up
                wrk(urls[name] + path, 2, 64)
            for round_no in range(rounds):
                order = list(commands) if round_no % 2 == 0 else list(reversed(commands))
                for name in order:
                    samples[name].append(wrk(urls[name] + path, seconds, 64))
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


def worker_counts(env: dict[str, str], work: Path, rounds: int, seconds: float) -> list[str]:
    lines = ["| workers | /health req/s | p99 ms | errors |", "|---:|---:|---:|---:|"]
    for count in (1, 2, 4):
        runs = []
        log = work / f"wc-{count}.log"
        with serve(gunicorn_command(), env | {"WEB_CONCURRENCY": str(count)}, log) as running:
            wrk(f"{running.url}/health", 2, 64)
            runs = [wrk(f"{running.url}/health", seconds, 64) for _ in range(rounds)]
        lines.append(
            f"| {count} | {statistics.median(s.rps for s in runs):,.0f} "
            f"| {statistics.median(s.p99_ms for s in runs):.2f} | {sum(s.errors for s in runs)} |"
        )
    return lines


def memory(env: dict[str, str], work: Path, targets: Sequence[int]) -> list[str]:
    """RSS of each worker after the first and second target count of the mixed load."""
    script = work / "mixed.lua"
    script.write_text(MIXED_LUA)
    env = env | {"SERVER__MAX_REQUESTS": "0", "WEB_CONCURRENCY": "2"}
    header = f"| requests | worker RSS MiB (each) | growth since {targets[0]:,} |"
    lines = [header, "|---:|---|---:|"]
    with serve(gunicorn_command(), env, work / "mem.log") as running:
        pids = workers_of(running.process.pid)
        done, baseline = 0, 0.0
        for target in targets:
            while done < target:
                sample = wrk(running.url, 5, 32, script=script)
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


def recycling(env: dict[str, str], work: Path, seconds: float) -> list[str]:
    lines = [
        "| event | worker class | clients | requests | failed | p50 ms | p99 ms | reboots |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    # max_requests: each worker recycles every ~6-12 s here, several times a run, and the jitter
    # (as large as the limit) keeps both from rebooting at once (a boot takes ~1.8 s here).
    events = {"SIGHUP every 4 s": seconds, "max_requests 6000 (+0-6000)": 2 * seconds}
    for event, duration in events.items():
        for worker in (PLAIN_WORKER, OUR_WORKER):
            for close in (False, True):
                extra = env | (
                    {"SERVER__MAX_REQUESTS": "6000", "SERVER__MAX_REQUESTS_JITTER": "6000"}
                    if event.startswith("max")
                    else {"SERVER__MAX_REQUESTS": "0"}
                )
                log = work / "recycle.log"
                log.write_text("")
                with serve(gunicorn_command("-k", worker), extra, log) as running:
                    stop = threading.Event()
                    sender = threading.Thread(
                        target=_signal_every, args=(running.process, 4.0, stop)
                    )
                    if event.startswith("SIGHUP"):
                        sender.start()
                    try:
                        sample = wrk(f"{running.url}/health", duration, 16, close=close)
                    finally:
                        stop.set()
                        if sender.is_alive():
                            sender.join()
                boots = log.read_text().count("Booting worker") - 2
                clients = "new connection each" if close else "keep-alive"
                lines.append(
                    f"| {event} | {worker} | {clients} | {sample.requests:,} "
                    f"| {sample.errors} | {sample.p50_ms:.1f} | {sample.p99_ms:.0f} | {boots} |"
                )
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=4)
    parser.add_argument("--recycle-seconds", type=float, default=12)
    parser.add_argument("--memory-requests", type=int, nargs=2, default=[20_000, 100_000])
    parser.add_argument(
        "--only", choices=("manager", "workers", "memory", "recycling"), action="append"
    )
    args = parser.parse_args(argv)
    parts = args.only or ["manager", "workers", "memory", "recycling"]
    work = Path(tempfile.mkdtemp(prefix="app-bench-server-"))
    work.chmod(0o755)
    cluster = PgCluster.create(work / "pg")
    try:
        env = bench_env(cluster)
        prepare_database(cluster, env)
        if "manager" in parts:
            print("\n## Process manager: Gunicorn + Uvicorn worker vs uvicorn --workers 2")
            print(f"(both on CPU 1, wrk -c64 on CPU 0, {args.rounds} interleaved rounds)\n")
            print("\n".join(process_manager(env, work, args.rounds, args.seconds)), flush=True)
        if "workers" in parts:
            print("\n## Requests/s by worker count (server on both cores, wrk -c64 on CPU 0)\n")
            print("\n".join(worker_counts(env, work, args.rounds, args.seconds)), flush=True)
        if "memory" in parts:
            print("\n## Worker memory (/health, /ready, a row, a page of rows; no recycling)\n")
            print("\n".join(memory(env, work, args.memory_requests)), flush=True)
        if "recycling" in parts:
            print("\n## Reloads and recycling under wrk -c16 on /health (wrk on CPU 0)")
            print("(failed = wrk socket errors + non-2xx; reboots = workers booted after start)\n")
            print("\n".join(recycling(env, work, args.recycle_seconds)), flush=True)
    finally:
        cluster.destroy()
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
