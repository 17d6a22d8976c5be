"""Adding many observations to a prometheus-client histogram at once.

prometheus-client has no "observe n values", and one `observe()` per request cost about 28 us
of CPU in multiprocess mode (a write to a memory-mapped file per bucket and sum,
docs/benchmarks.md). Its histogram child keeps one value per bucket (`_buckets`) and the sum
(`_sum`); this is the one module that reaches into them (docs/adr/0006-private-names.md), and
tests/unit/test_metrics.py fails if they change.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def add_observations(child: Any, bucket_counts: Sequence[float], total: float) -> None:
    """Add `bucket_counts[i]` observations to bucket `i` of a labelled histogram `child`,
    and `total` to its sum: what that many `observe()` calls would have added."""
    for index, count in enumerate(bucket_counts):
        if count:
            child._buckets[index].inc(count)
    child._sum.inc(total)
