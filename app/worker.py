"""The Gunicorn worker class: `uvicorn_worker.UvicornWorker` plus what it does not do.

1. `uvicorn_worker` maps keepalive, timeout, max_requests, backlog and forwarded_allow_ips, but
   not uvicorn's `timeout_graceful_shutdown` (docs/facts.md). Without it an overrunning request is
   cut by Gunicorn's SIGKILL at `graceful_timeout`, and the lifespan shutdown (engine.dispose())
   never runs; with it set a little lower, uvicorn ends the request itself and shutdown still runs.

2. A stopping worker (SIGHUP reload, `max_requests` recycle, SIGTERM) must not drop requests.
   uvicorn's `Server.shutdown()` closes every connection that has no response in progress at
   once. Two kinds of request die there without an answer (measured: 0.2-0.5 % of requests
   around each reload, docs/benchmarks.md):
   - a request already on the wire over an idle kept-alive connection (the client cannot tell
     the close came first, so it reports "server disconnected");
   - a new connection the worker has accepted whose request bytes have not been read yet.
   No library fixes this (uvicorn, uvicorn-worker and Gunicorn's own asgi worker all close idle
   connections at once), so it is done here, the way Gunicorn's sync/gthread workers do
   (benoitc/gunicorn#2313): once stopping, every response says `Connection: close`, and idle
   connections are kept open for `SERVER__DRAIN_IDLE_SECONDS` so whatever is already in flight
   on them gets that answer. Then the remaining idle ones are closed, and uvicorn's own shutdown
   runs as before (wait for in-flight requests up to `timeout_graceful_shutdown`, lifespan).

3. Before serving, the heap built at startup (the app, its routes, SQLAlchemy and pydantic
   internals) is frozen out of the garbage collector's way, and the youngest generation's
   threshold is raised (`tune_gc`). See its docstring for the figures.

4. While draining, the worker keeps telling Gunicorn it is alive: uvicorn stops its heartbeat
   when its main loop ends, so a recycling worker's in-flight requests got only `timeout`, not
   `graceful_timeout`, before the master killed it (docs/facts.md).

The parts of uvicorn touched here (`Server.shutdown`, `ServerState`, `HttpToolsProtocol`, the
worker's `_serve`) are not all public: docs/adr/0006-private-names.md lists them and the tests
that fail when they change.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import socket
import sys
import time
from typing import TYPE_CHECKING, Any, ClassVar

import structlog
from gunicorn.arbiter import Arbiter  # type: ignore[import-untyped]  # no py.typed
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import Server, ServerState
from uvicorn_worker import UvicornWorker  # type: ignore[import-untyped]  # ships no py.typed

from app.settings import load_settings

if TYPE_CHECKING:
    from prometheus_client import Counter

# Seconds kept between uvicorn giving up on in-flight requests and Gunicorn's SIGKILL.
SHUTDOWN_MARGIN = 2
# How often the drain loop looks at its connections.
_DRAIN_POLL = 0.01


class _State(ServerState):
    def __init__(self) -> None:
        super().__init__()
        self.draining = False


class DrainingHttpProtocol(HttpToolsProtocol):
    """httptools' protocol that answers `Connection: close` once the worker is stopping, and
    notes when the head of the request it is reading began (`head_started`): at accept for the
    first request, at the first byte for a later one; None once the head is complete."""

    head_started: float | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[arg-type]  # uvicorn narrows it
        self.head_started = time.monotonic()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self.head_started is None:
            self.head_started = time.monotonic()

    def on_headers_complete(self) -> None:
        self.head_started = None
        super().on_headers_complete()
        state = self.server_state
        # The request's task starts on the next loop iteration, so its response sees this.
        if isinstance(state, _State) and state.draining and self.cycle is not None:
            self.cycle.keep_alive = False


def _busy(connection: Any) -> bool:
    cycle = connection.cycle
    return cycle is not None and not cycle.response_complete


class DrainingServer(Server):
    """uvicorn's server whose shutdown answers what is already in flight before closing."""

    def __init__(
        self,
        config: Any,
        *,
        drain_idle: float,
        heartbeat: Any,
        header_timeout: float = 0,
        slow_heads: Counter | None = None,
    ) -> None:
        super().__init__(config)
        self._state = _State()
        self.server_state = self._state
        self._drain_idle = drain_idle
        self._heartbeat = heartbeat
        self._header_timeout = header_timeout
        self._slow_heads = slow_heads

    async def on_tick(self, counter: int) -> bool:
        # uvicorn calls this every 0.1 s: the header-read deadline's precision.
        if self._header_timeout:
            self._close_slow_heads(time.monotonic() - self._header_timeout)
        return await super().on_tick(counter)

    def _close_slow_heads(self, began_before: float) -> None:
        """Close, without an answer, each connection whose request head began before then."""
        for connection in list(self._state.connections):
            if not isinstance(connection, DrainingHttpProtocol):
                continue  # a WebSocket: no request head to wait for
            started = connection.head_started
            if started is not None and started < began_before:
                connection.head_started = None
                connection.transport.close()
                if self._slow_heads is not None:
                    self._slow_heads.inc()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        beating = asyncio.create_task(self._beat())
        try:
            await self._drain(sockets)
            await super().shutdown(sockets)  # closes what is left, waits, lifespan shutdown
        finally:
            beating.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beating

    async def _drain(self, sockets: list[socket.socket] | None) -> None:
        # Stop accepting here; the listening socket stays open in the master and the other
        # workers, so connections still in the kernel's queue go to them.
        for server in self.servers:
            server.close()
        for sock in sockets or []:
            sock.close()
        state = self._state
        state.draining = True
        deadline = time.monotonic() + self._drain_idle
        while state.connections and time.monotonic() < deadline and not self.force_exit:
            for connection in list(state.connections):
                if _busy(connection):
                    connection.shutdown()  # closes after this response (it started undrained)
            await asyncio.sleep(_DRAIN_POLL)

    async def _beat(self) -> None:
        # Gunicorn kills a worker that stops notifying for `timeout` seconds.
        while True:
            await self._heartbeat()
            await asyncio.sleep(1.0)


def slow_heads_counter() -> Counter:
    """Connections closed for a request head that took too long, summed on /metrics like every
    metric of the workers (prometheus-client's multiprocess files, app/metrics.py)."""
    # Imported in the worker: the master loads this module before gunicorn_conf.py names the
    # multiprocess directory, and prometheus-client picks its mode when first imported.
    from prometheus_client import CollectorRegistry, Counter  # noqa: PLC0415

    return Counter(
        "http_header_timeouts",
        "Connections closed without an answer: the request head took longer than "
        "SERVER__HEADER_TIMEOUT_SECONDS.",
        registry=CollectorRegistry(),  # written to the shared files; read by /metrics
    )


def tune_gc(threshold: int) -> dict[str, Any]:
    """Freeze what exists now and set the youngest generation's threshold (0: keep Python's).

    Python 3.11 collects the youngest generation each time 700 more container objects exist
    than were freed, and every older collection walks the whole heap: a worker's startup heap
    (FastAPI, SQLAlchemy, pydantic) is a few hundred thousand objects that will never be
    garbage. Measured with one worker under wrk on a one-row read by id: the collector
    took 7.5-8.6 % of the worker's time, half of it in full collections. `gc.freeze()` (made
    for this case, Python docs) moves the startup heap to a generation no collection visits:
    full collections fell from 0.36 s to 0.01 s per 8 s. A threshold of 5,000 left 3 young
    collections in 16 s instead of ~1,100 at 700, so the collector's share fell under 0.1 %;
    cyclic garbage waits for at most that many more objects before it is collected.
    """
    gc.freeze()
    if threshold:
        gc.set_threshold(threshold, *gc.get_threshold()[1:])
    return {"frozen": gc.get_freeze_count(), "threshold": list(gc.get_threshold())}


class Worker(UvicornWorker):  # type: ignore[misc]  # base is untyped (Any)
    CONFIG_KWARGS: ClassVar[dict[str, Any]] = {
        "loop": "auto",  # uvloop from uvicorn[standard]: about twice asyncio's throughput
        "http": DrainingHttpProtocol,  # httptools (uvicorn[standard]), drain-aware
        "server_header": False,  # do not advertise the server and its version
    }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        graceful: float = self.cfg.graceful_timeout
        self.config.timeout_graceful_shutdown = max(1, int(graceful) - SHUTDOWN_MARGIN)
        # Already validated by gunicorn_conf.py in the master; read again for these values.
        server = load_settings().server
        self.drain_idle = server.drain_idle_seconds
        self.gc_threshold = server.gc_threshold
        self.header_timeout = server.header_timeout_seconds

    async def _serve(self) -> None:
        # The app is imported and built (Gunicorn's `load_wsgi`); its lifespan has not run.
        structlog.get_logger("app.worker").info(
            "worker_gc", pid=os.getpid(), **tune_gc(self.gc_threshold)
        )
        # uvicorn_worker's own `_serve`, with the draining server.
        self.config.app = self.wsgi
        server = DrainingServer(
            self.config,
            drain_idle=self.drain_idle,
            heartbeat=self.callback_notify,
            header_timeout=self.header_timeout,
            slow_heads=slow_heads_counter(),
        )
        self._install_sigquit_handler()
        await server.serve(sockets=self.sockets)
        if not server.started:
            sys.exit(Arbiter.WORKER_BOOT_ERROR)
