"""Gunicorn configuration: `gunicorn -c gunicorn_conf.py app.main:app`.

Reads the environment only, through the service's own settings, and never imports the FastAPI
app. The settings are validated here, when Gunicorn reads this file: before it binds a socket or
forks a worker. An invalid environment prints one message naming every bad variable and the
master exits with status 2, instead of every worker failing and being restarted in a loop.

`python gunicorn_conf.py` prints the effective configuration as JSON without starting anything.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from app.logging import dict_config
from app.server_config import worker_count
from app.settings import Settings, SettingsError, load_settings


def _load() -> Settings:
    try:
        return load_settings()
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        raise SystemExit(2) from None


_settings = _load()
_server = _settings.server
_workers_count, _workers_inputs = worker_count(
    _settings.web_concurrency,
    minimum=_server.workers_min,
    maximum=_server.workers_max,
)
# Workers inherit the environment: tell them how many of them there are (connection budget).
os.environ["WEB_CONCURRENCY"] = str(_workers_count)

wsgi_app = "app.main:app"
worker_class = "app.worker.Worker"
workers = _workers_count
# "[::]" binds IPv6 (and IPv4 where the OS maps it).
bind = [
    f"[{_settings.host}]:{_settings.port}"
    if ":" in _settings.host
    else f"{_settings.host}:{_settings.port}"
]
backlog = _server.backlog
timeout = _server.timeout
graceful_timeout = _server.graceful_timeout
keepalive = _server.keepalive
forwarded_allow_ips = _server.forwarded_allow_ips
# Recycling bounds slow leaks; the jitter spreads the workers' restarts apart.
max_requests = _server.max_requests
max_requests_jitter = _server.max_requests_jitter
# Engines and pools must be created after fork, in each worker's lifespan (docs/facts.md: server).
preload_app = False
# Gunicorn >= 25.1 opens a control socket under ~/.gunicorn by default; unused here, and an
# error on a read-only root filesystem.
control_socket_disable = True
# The heartbeat file: on a tmpfs, not on a disk-backed or read-only root filesystem.
worker_tmp_dir = "/dev/shm" if Path("/dev/shm").is_dir() else None  # noqa: S108 - tmpfs by design
# The app logs one line per request itself; Gunicorn's access log would double it.
accesslog = None
logconfig_dict = dict_config(_settings.log, production=_settings.is_production)


def effective() -> dict[str, Any]:
    """What Gunicorn will run with, and why the worker count is what it is."""
    return {
        "bind": bind,
        "workers": workers,
        "workers_inputs": _workers_inputs,
        "worker_class": worker_class,
        "timeout": timeout,
        "graceful_timeout": graceful_timeout,
        "keepalive": keepalive,
        "backlog": backlog,
        "forwarded_allow_ips": forwarded_allow_ips,
        "max_requests": max_requests,
        "max_requests_jitter": max_requests_jitter,
        "preload_app": preload_app,
        "worker_tmp_dir": worker_tmp_dir,
        "accesslog": accesslog,
        # Applied by each worker before it serves (app/worker.py `tune_gc`).
        "gc_threshold": _server.gc_threshold,
        "app_env": _settings.app_env,
    }


def on_starting(server: Any) -> None:
    # A fresh directory for prometheus-client's multiprocess files, before any worker imports
    # it: values of a previous run must not be summed into this one.
    metrics_dir = Path(tempfile.mkdtemp(prefix="app-metrics-"))
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    server.log.info("gunicorn_config %s", json.dumps(effective(), sort_keys=True))


def on_exit(server: Any) -> None:
    # The directory is this run's alone (on_starting made it): leave nothing behind in /tmp.
    shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)


def child_exit(server: Any, worker: Any) -> None:
    # Imported here, after on_starting set the directory (the master never imports the app).
    # `registry=None`: multiprocess values live in files, and this module is executed again on
    # every HUP, where registering the counter a second time would raise in the master.
    # A metrics problem must never take the master down: log it and go on.
    try:
        from prometheus_client import Counter, multiprocess  # noqa: PLC0415

        multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]
        Counter(
            "gunicorn_worker_exits",
            "Workers that exited (recycled, killed, reloaded).",
            registry=None,
        ).inc()
    except Exception:
        server.log.exception("worker exit metrics failed")


if __name__ == "__main__":
    print(json.dumps(effective(), indent=2, sort_keys=True))
