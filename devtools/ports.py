"""Loopback ports for the servers the tests, `make run` and `make bench` start, without races.

Binding port 0 and closing the socket (the usual trick) hands the next process the same
number as soon as it is free again: two test processes, or a client connection's local port,
can take it before the server binds it. Here a port is taken from below the kernel's range for
client ports, so no outgoing connection ever picks it, and it is reserved with a lock file that
every process on the machine honours until the process that reserved it exits.
"""

from __future__ import annotations

import atexit
import fcntl
import random
import socket
import tempfile
from pathlib import Path
from typing import IO

LOCKS = Path(tempfile.gettempdir()) / "service-ports"
LOWEST = 20000
# A process keeps its reservations (open, locked files) until it exits.
_HELD: list[IO[bytes]] = []


@atexit.register
def _release() -> None:
    while _HELD:
        _HELD.pop().close()


def client_port_floor() -> int:
    """The lowest port the kernel gives to outgoing connections (Linux's default: 32768)."""
    try:
        low = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0]
    except OSError:
        return 32768
    return int(low)


def _reserve(port: int) -> bool:
    LOCKS.mkdir(mode=0o1777, exist_ok=True)
    handle = (LOCKS / str(port)).open("ab")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return False
    _HELD.append(handle)
    return True


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_port() -> int:
    """A loopback port nothing listens on and no other process of this machine was given."""
    candidates = list(range(LOWEST, client_port_floor()))
    random.shuffle(candidates)
    for port in candidates:
        # A reserved port in use by something that took no reservation stays reserved, unused.
        if _reserve(port) and _bindable(port):
            return port
    raise RuntimeError(f"no free loopback port between {LOWEST} and {client_port_floor()}")
