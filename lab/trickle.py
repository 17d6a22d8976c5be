"""Slow clients for the lab's benchmark: `python -m lab.trickle PORT COUNT EVERY` keeps COUNT
connections to 127.0.0.1:PORT each sending a request head one byte every EVERY seconds, and
opens a new one whenever the server cuts one (its header-read deadline), until it is stopped."""

from __future__ import annotations

import asyncio
import sys

HEAD = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: " + b"x" * 200 + b"\r\n\r\n"


async def one_slow_client(port: int, every: float) -> None:
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            for byte in HEAD:
                writer.write(bytes([byte]))
                await writer.drain()
                await asyncio.sleep(every)
            writer.close()
        except OSError:
            await asyncio.sleep(every)  # cut by the server: come back


async def main(port: int, count: int, every: float) -> None:
    await asyncio.gather(*(one_slow_client(port, every) for _ in range(count)))


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])))
