"""`make run` and the README's first screen, as typed: a project-local cluster, the curl
commands answering what the README shows, a clean stop on Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
from pathlib import Path

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
