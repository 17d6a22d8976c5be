"""One test run's shared folder.

Every process of a run finds it through `VARIABLE`: pytest-xdist's workers, and a generated
service's suite that the template's tests start alongside. They share through it what a run must
have once (a Docker engine, the generated service's suite); the process that created it owns it
and, at the end, stops what was started there and removes it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

VARIABLE = "SERVICE_TESTS_RUN_DIR"


def begin() -> bool:
    """Join the run this process was started in, or begin one; whether this process owns it."""
    if os.environ.get(VARIABLE):
        return False
    os.environ[VARIABLE] = tempfile.mkdtemp(prefix="service-tests-run-")
    return True


def folder() -> Path:
    return Path(os.environ[VARIABLE])


def tag() -> str:
    """A short name of this run, for what it creates outside its folder (Compose projects)."""
    return folder().name.rsplit("-", 1)[-1].lower().replace("_", "")


def end() -> None:
    shutil.rmtree(folder(), ignore_errors=True)
    del os.environ[VARIABLE]


def claim(name: str) -> bool:
    """True for the one process of the run that asks first (the others get False)."""
    try:
        (folder() / f"{name}.claimed").touch(exist_ok=False)
    except FileExistsError:
        return False
    return True


@contextmanager
def locked(name: str) -> Iterator[None]:
    """One process of the run at a time."""
    with (folder() / f"{name}.lock").open("ab") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def outlives_its_starter(process: subprocess.Popen[bytes]) -> None:
    """`process` leads a session of its own that the run's owner ends when the run ends."""
    with (folder() / "sessions").open("a") as sessions:
        sessions.write(f"{process.pid}\n")


def end_sessions() -> None:
    listed = folder() / "sessions"
    for pid in map(int, listed.read_text().split() if listed.exists() else []):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
        wait_gone(pid, timeout=30)


def wait_gone(pid: int, *, timeout: float) -> None:
    """Until `pid` has exited (and, if it is this process's child, been reaped)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return
        except ChildProcessError:  # not ours: gone once /proc forgets it
            if not Path(f"/proc/{pid}").exists():
                return
        time.sleep(0.1)
