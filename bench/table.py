"""A benchmark table's row: the medians of one case's rounds, and its ratio to the baseline's."""

from __future__ import annotations

import statistics

from bench.wrk import Sample

# The measured columns; a table puts its own naming columns before them.
HEADER = (
    "req/s | p50 ms | p99 ms | server CPU us/req | errors "
    "| req/s vs {baseline} (median of per-round ratios)"
)
ALIGN = "---:|---:|---:|---:|---:|---:"


def cells(runs: list[Sample], baseline: list[Sample]) -> str:
    """The measured cells of `runs` (no ratio for the baseline itself)."""
    ratios = [s.rps / b.rps for s, b in zip(runs, baseline, strict=True)]
    ratio = (
        f"**{statistics.median(ratios):.2f}** (rounds {min(ratios):.2f}-{max(ratios):.2f})"
        if runs is not baseline
        else ""
    )
    return (
        f"{statistics.median(s.rps for s in runs):,.0f} "
        f"| {statistics.median(s.p50_ms for s in runs):.2f} "
        f"| {statistics.median(s.p99_ms for s in runs):.2f} "
        f"| {statistics.median(s.cpu_us_per_request for s in runs):.0f} "
        f"| {sum(s.errors for s in runs)} | {ratio}"
    )


def failed(runs: list[Sample]) -> bool:
    return any(s.errors for s in runs)


def verdict(failures: bool) -> int:
    """The exit status of a benchmark run: any request that failed fails the run."""
    if failures:
        print("\nFAILED: the load generator saw errors (non-2xx or socket errors).")
        return 1
    return 0
