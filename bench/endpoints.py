"""What `make bench` measures: the service's endpoints, and the rows they read.

A domain adds its reads to ENDPOINTS (each is measured against `/health`, the first) and what
they read to SEED, which is written through the API before the rounds.
"""

from __future__ import annotations

# (what it is, path); the first is the baseline of the ratios.
ENDPOINTS: list[tuple[str, str]] = [
    ("liveness (the baseline)", "/health"),
    ("readiness: a database ping, cached", "/ready"),
    # example-only
    ("one item by id", "/api/v1/items/1"),
    ("a page of 20 items", "/api/v1/items?limit=20"),
    # /example-only
]
# (path, JSON body) to POST before the rounds.
SEED: list[tuple[str, dict[str, str]]] = [
    # example-only
    *[("/api/v1/items", {"name": f"bench {n}", "description": "a row to read"}) for n in range(20)],
    # /example-only
]
