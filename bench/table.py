"""A benchmark table's row: the medians of one case's rounds, and its ratio to the baseline's."""

from __future__ import annotations

import statistics

from bench.wrk import Sample

# The measured columns; a table puts its own naming columns before them.
# Both ratios read "this row's share of the baseline's": requests per second, and the CPU a
# request takes (the baseline's per request over this row's), so 0.90 is 10 % dearer either way.
HEADER = (
    "req/s | p50 ms | p99 ms | server CPU us/req | errors "
    "| req/s vs {baseline} (median of per-round ratios) "
    "| by CPU per request vs {baseline} (median of per-round ratios)"
)
ALIGN = "---:|---:|---:|---:|---:|---:|---:"


def cells(runs: list[Sample], baseline: list[Sample]) -> str:
    """The measured cells of `runs` (no ratio for the baseline itself)."""
    by_rate = [s.rps / b.rps for s, b in zip(runs, baseline, strict=True)]
    by_cpu = [  # none where the server's CPU was not read (0)
        b.cpu_us_per_request / s.cpu_us_per_request
        for s, b in zip(runs, baseline, strict=True)
        if s.cpu_us_per_request
    ]
    return (
        f"{statistics.median(s.rps for s in runs):,.0f} "
        f"| {statistics.median(s.p50_ms for s in runs):.2f} "
        f"| {statistics.median(s.p99_ms for s in runs):.2f} "
        f"| {statistics.median(s.cpu_us_per_request for s in runs):.0f} "
        f"| {sum(s.errors for s in runs)} "
        f"| {_ratio(by_rate) if runs is not baseline else ''} "
        f"| {_ratio(by_cpu) if runs is not baseline and by_cpu else ''}"
    )


def _ratio(per_round: list[float]) -> str:
    median = statistics.median(per_round)
    return f"**{median:.2f}** (rounds {min(per_round):.2f}-{max(per_round):.2f})"


def failed(runs: list[Sample]) -> bool:
    return any(s.errors for s in runs)


def verdict(failures: bool) -> int:
    """The exit status of a benchmark run: any request that failed fails the run."""
    if failures:
        print("\nFAILED: the load generator saw errors (non-2xx or socket errors).")
        return 1
    return 0
