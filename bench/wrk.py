"""wrk, the load generator: one run on CPU 0, its output parsed into a `Sample`."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


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


def _found(pattern: str, output: str) -> str:
    match = re.search(pattern, output, re.M)
    if match is None:
        raise ValueError(f"wrk printed no {pattern!r}:\n{output}")
    return match.group(1)


def parse_wrk(output: str) -> Sample:
    errors = 0
    if match := re.search(r"Non-2xx or 3xx responses: (\d+)", output):
        errors += int(match.group(1))
    if match := re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    ):
        errors += sum(int(n) for n in match.groups())
    return Sample(
        rps=float(_found(r"Requests/sec:\s+([\d.]+)", output)),
        p50_ms=_ms(_found(r"^\s+50%\s+(\S+)", output)),
        p99_ms=_ms(_found(r"^\s+99%\s+(\S+)", output)),
        errors=errors,
        requests=int(_found(r"(\d+) requests in", output)),
    )


def cpu_seconds(master: int) -> float:
    """User + system CPU of a Gunicorn master's workers (its children), in seconds."""
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
    seconds: float,
    connections: int,
    master: int | None = None,
    headers: dict[str, str] | None = None,
    script: Path | None = None,
    script_args: Sequence[str] = (),
    close: bool = False,
) -> Sample:
    """One wrk run against `url`; with `master`, the server's CPU per request too."""
    command = ["taskset", "-c", "0", "wrk", "-t1", f"-c{connections}", f"-d{round(seconds)}s"]
    # A slow answer is not a failed one: wrk's 2 s default counts it as a socket error.
    command += ["--latency", "--timeout", "10s"]
    command += [f"--header={name}: {value}" for name, value in (headers or {}).items()]
    if close:
        command += ["--header=Connection: close"]
    if script:
        command += ["--script", str(script)]
    before = cpu_seconds(master) if master else 0.0
    arguments = ["--", *script_args] if script_args else []
    result = subprocess.run([*command, url, *arguments], capture_output=True, text=True, check=True)
    sample = parse_wrk(result.stdout)
    if master and sample.requests:
        sample.cpu_us_per_request = (cpu_seconds(master) - before) / sample.requests * 1e6
    return sample
