"""A worker process's metrics, on its own `/metrics` (one process: no multiprocess files).

Counted as jobs run: started, succeeded, retried, failed, released (handed back at shutdown),
and run time, by job name. Read from the queue table at each scrape: jobs by state, and the age
of the oldest job that is ready to run, by job name. Jobs enqueued are counted where they are
enqueued, by the web tier (app/metrics.py), once their transaction commits.
"""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.metrics import LATENCY_BUCKETS

JOB_BUCKETS = (*LATENCY_BUCKETS[:-1], 30.0, 60.0, 300.0, 900.0, 3600.0, float("inf"))
STATES = ("queued", "picked", "failed")

# Per job and state: how many, and for ready jobs (queued, due now) how long the oldest has
# waited since it became due. One index-assisted scan of a table that holds only live jobs.
_QUEUE = text(
    """
    SELECT entrypoint, status::text AS state, count(*) AS jobs,
           coalesce(extract(epoch FROM now() - min(execute_after)
                    FILTER (WHERE status = 'queued' AND execute_after <= now())), 0) AS oldest
    FROM pgqueuer
    WHERE status IN ('queued', 'picked', 'failed')
    GROUP BY entrypoint, status
    """
)


class JobMetrics:
    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry()
        labels = ["job"]
        self.started = Counter("jobs_started_total", "Job runs started", labels, registry=registry)
        self.succeeded = Counter(
            "jobs_succeeded_total", "Job runs that succeeded", labels, registry=registry
        )
        self.retried = Counter(
            "jobs_retried_total",
            "Job runs that failed and were queued again",
            labels,
            registry=registry,
        )
        self.failed = Counter(
            "jobs_failed_total",
            "Jobs that failed their last attempt (held as failed)",
            labels,
            registry=registry,
        )
        self.released = Counter(
            "jobs_released_total",
            "Job runs stopped at shutdown and queued again",
            labels,
            registry=registry,
        )
        self.duration = Histogram(
            "job_duration_seconds", "Job run time", labels, buckets=JOB_BUCKETS, registry=registry
        )
        self.queued = Gauge(
            "jobs_in_queue", "Jobs in the queue table by state", ["job", "state"], registry=registry
        )
        self.oldest_ready = Gauge(
            "jobs_oldest_ready_age_seconds",
            "How long the oldest job that is due has waited to start (0: none waiting)",
            labels,
            registry=registry,
        )
        self.up = Gauge(
            "jobs_queue_scrape_ok", "1 when the last scrape could read the queue", registry=registry
        )

    def declare(self, names: Sequence[str]) -> None:
        """Every known job's series exist from the start, at zero: rates and alerts see them."""
        for name in names:
            for counter in (self.started, self.succeeded, self.retried, self.failed, self.released):
                counter.labels(name)
            self.oldest_ready.labels(name).set(0)
            for state in STATES:
                self.queued.labels(name, state).set(0)

    async def read_queue(self, engine: AsyncEngine, names_by_entrypoint: dict[str, str]) -> None:
        """Queue gauges from the table; on failure they keep their last values and
        `jobs_queue_scrape_ok` is 0."""
        try:
            async with engine.connect() as connection:
                rows = (await connection.execute(_QUEUE)).all()
        except Exception:
            self.up.set(0)
            raise
        self.up.set(1)
        oldest: dict[str, float] = dict.fromkeys(names_by_entrypoint.values(), 0.0)
        counts = {(name, state): 0 for name in oldest for state in STATES}
        for entrypoint, state, jobs, age in rows:
            name = names_by_entrypoint.get(entrypoint, entrypoint)
            counts[name, state] = counts.get((name, state), 0) + jobs
            oldest[name] = max(oldest.get(name, 0.0), float(age))
        for (name, state), jobs in counts.items():
            self.queued.labels(name, state).set(jobs)
        for name, age in oldest.items():
            self.oldest_ready.labels(name).set(age)
