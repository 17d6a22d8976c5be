"""`make run` and the README's first screen, as typed: a project-local cluster, the curl
commands answering what the README shows, a clean stop on Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time  # jobs-only
from pathlib import Path

import httpx  # jobs-only
import pytest

from devtools.ports import free_port
from tests.docs import documented, documented_with_output, matches_shown, spawn, typed
from tests.support import HAS_EXAMPLE, ROOT, clean_env, port_is_free, wait_for


@pytest.mark.slow
def test_make_run_serves_ready_and_stops_on_sigint(tmp_path: Path) -> None:
    local = Path(tempfile.mkdtemp(prefix="app-make-run-"))
    local.chmod(0o755)
    port = free_port()
    env = clean_env(PORT=str(port), DEV_PG_DIR=str(local / "postgres"), WEB_CONCURRENCY="1")
    log_path = tmp_path / "make-run.log"
    process = spawn(documented("README.md", "make run"), log=log_path, cwd=ROOT, env=env)
    try:
        wait_for(f"http://127.0.0.1:{port}/health", timeout=60)
        ready = wait_for(f"http://127.0.0.1:{port}/ready", timeout=20)
        assert ready.json()["status"] == "ready"
        # The second walkthrough command writes through the example domain's API.
        walkthrough = ("curl localhost:8000/ready", *(("curl -X POST",) if HAS_EXAMPLE else ()))
        for starts in walkthrough:
            command, shown = documented_with_output("README.md", starts)
            on_port = command.replace("localhost:8000", f"localhost:{port}")
            ran = typed(on_port, env=clean_env(), shown=command)
            assert ran.returncode == 0, ran.stderr
            assert matches_shown(shown, ran.stdout), (shown, ran.stdout)
        run_the_worker_beside(env, port, tmp_path)  # jobs-only
        # Ctrl-C in a terminal signals the whole foreground process group.
        os.killpg(process.pid, signal.SIGINT)
        # make itself re-raises SIGINT once its child has finished, as in a terminal.
        assert process.wait(timeout=40) in (0, -signal.SIGINT), log_path.read_text()
        output = log_path.read_text()
        assert "database_disposed" in output  # the worker's lifespan shutdown ran
        assert port_is_free(port)
        assert f"http://127.0.0.1:{port}" in output
        for line in ("creating a PostgreSQL cluster in", "using the local PostgreSQL on", "open"):
            assert f"[make run] {line}" in output
        assert "local PostgreSQL stopped" in output
        assert not (local / "postgres" / "data" / "postmaster.pid").exists()
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        subprocess.run(["rm", "-rf", str(local)], check=False)


# jobs-only
def run_the_worker_beside(env: dict[str, str], port: int, tmp_path: Path) -> None:
    """`make worker` in a second terminal: it shares `make run`'s local PostgreSQL, runs what
    was enqueued before it started, and its Ctrl-C leaves the database to `make run`."""
    worker_port = free_port()
    log_path = tmp_path / "make-worker.log"
    worker = spawn(
        documented("docs/jobs.md", "make worker"),
        log=log_path,
        cwd=ROOT,
        env=env | {"JOBS__PORT": str(worker_port)},
    )
    try:
        wait_for(f"http://127.0.0.1:{worker_port}/health", timeout=60)
        if HAS_EXAMPLE:  # the README's POST above queued the item's publishing
            deadline = time.monotonic() + 20
            while (
                httpx.get(f"http://127.0.0.1:{port}/api/v1/items/1").json()["published_at"] is None
            ):
                assert time.monotonic() < deadline, log_path.read_text()[-3000:]
                time.sleep(0.2)
        os.killpg(worker.pid, signal.SIGINT)
        assert worker.wait(timeout=40) in (0, -signal.SIGINT), log_path.read_text()
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()
    assert "local PostgreSQL stopped" not in log_path.read_text()
    assert wait_for(f"http://127.0.0.1:{port}/ready").json()["status"] == "ready"


# /jobs-only
