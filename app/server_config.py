"""How many Gunicorn workers to run: pure functions, so they are testable without a server.

`gunicorn_conf.py` calls `worker_count()`. The standard library's CPU counters count the host's
cores and ignore a container's CPU quota (docs/facts.md; cpython#149452): 64 workers in a 2-CPU
pod. This reads the affinity mask and the cgroup v2 `cpu.max` (or v1 `cfs_quota_us`) instead.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

CGROUP_ROOT = Path("/sys/fs/cgroup")


def cgroup_cpu_quota(root: Path = CGROUP_ROOT) -> float | None:
    """CPUs allowed by the cgroup quota, or None when unlimited or unknown."""
    v2 = root / "cpu.max"  # "max 100000" or "200000 100000"
    if v2.is_file():
        limit, _, period = v2.read_text().strip().partition(" ")
        return None if limit == "max" else int(limit) / int(period or 100000)
    v1_quota, v1_period = root / "cpu" / "cpu.cfs_quota_us", root / "cpu" / "cpu.cfs_period_us"
    if v1_quota.is_file() and v1_period.is_file():
        quota = int(v1_quota.read_text())
        return None if quota <= 0 else quota / int(v1_period.read_text())
    return None


def usable_cpus(affinity: int, quota: float | None) -> int:
    """Whole CPUs this process can keep busy: a fractional quota rounds up (1.5 CPUs -> 2)."""
    usable = float(affinity) if quota is None else min(float(affinity), quota)
    return max(1, math.ceil(usable - 1e-9))


def worker_count(
    web_concurrency: int | None,
    *,
    minimum: int,
    maximum: int,
    affinity: int | None = None,
    cgroup_root: Path = CGROUP_ROOT,
) -> tuple[int, dict[str, Any]]:
    """`WEB_CONCURRENCY` when set; else one async worker per usable CPU, within [min, max]."""
    if web_concurrency is not None:
        return web_concurrency, {"source": "WEB_CONCURRENCY"}
    cpus_allowed = affinity if affinity is not None else len(os.sched_getaffinity(0))
    quota = cgroup_cpu_quota(cgroup_root)
    cpus = usable_cpus(cpus_allowed, quota)
    inputs: dict[str, Any] = {"source": "cpus", "affinity": cpus_allowed, "min": minimum}
    inputs |= {"max": maximum, "usable_cpus": cpus}
    if quota is not None:
        inputs["cgroup_quota"] = round(quota, 2)
    return min(max(cpus, minimum), maximum), inputs
