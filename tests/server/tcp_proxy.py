"""An in-process TCP proxy that can hold bytes without closing anything, as a dead network does,
or cut every connection and refuse new ones, as a database that went away does; it counts the
connections it was asked for, so a test can tell whether the service tried the database at all.

Toxiproxy is not in Debian's packages; this is the practical substitute (docs/facts.md), after
asyncpg's own `_testbase/fuzzer.py`. Loopback only.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from devtools.ports import free_port


class TcpProxy:
    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self._loop = asyncio.new_event_loop()
        self._flowing = asyncio.Event()
        self._refusing = False
        self._open: set[asyncio.StreamWriter] = set()
        self.connections = 0  # connection attempts by the service, refused ones included
        # Waiting on a hold: connections not yet made upstream, and ones with bytes to pass on.
        self.stalled = {"connect": 0, "send": 0}
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def hold(self) -> None:
        """From now on no byte passes in either direction and no connection is made upstream."""
        self._loop.call_soon_threadsafe(self._flowing.clear)

    def cut(self) -> None:
        """Close every open connection and, from now on, each new one at once."""
        self._loop.call_soon_threadsafe(self._cut)

    def _cut(self) -> None:
        self._refusing = True
        for writer in self._open:
            writer.close()

    def heal(self) -> None:
        self._loop.call_soon_threadsafe(self._heal)

    def _heal(self) -> None:
        self._refusing = False
        self._flowing.set()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._flowing.set()
        server = self._loop.run_until_complete(
            asyncio.start_server(self._serve, "127.0.0.1", self.port)
        )
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            server.close()
            for task in asyncio.all_tasks(self._loop):
                task.cancel()
            with contextlib.suppress(Exception):
                self._loop.run_until_complete(asyncio.sleep(0))
            self._loop.close()

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self.connections += 1
        await self._pass("connect")
        if self._refusing:
            client_w.close()
            return
        try:
            upstream_r, upstream_w = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            client_w.close()
            return
        self._open |= {client_w, upstream_w}
        try:
            await asyncio.gather(
                self._pipe(client_r, upstream_w),
                self._pipe(upstream_r, client_w),
                return_exceptions=True,
            )
        finally:
            self._open -= {client_w, upstream_w}

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                await self._pass("send")  # held here while partitioned
                writer.write(data)
                await writer.drain()
        finally:
            writer.close()

    async def _pass(self, what: str) -> None:
        if self._flowing.is_set():
            return
        self.stalled[what] += 1
        try:
            await self._flowing.wait()
        finally:
            self.stalled[what] -= 1

    @contextmanager
    def running(self) -> Iterator[TcpProxy]:
        self._thread.start()
        self._ready.wait(5)
        try:
            yield self
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
