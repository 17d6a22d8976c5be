"""deploy/systemd checked by systemd itself (`systemd-analyze verify`) and against the Gunicorn
configuration it wraps; the Procfile runs the same command."""

from __future__ import annotations

import configparser
import json
import os
import subprocess
import sys
from pathlib import Path

from app.settings import DatabaseSettings, JobsSettings  # jobs-only
from tests import parts
from tests.support import ROOT, clean_env

SYSTEMD = ROOT / "deploy" / "systemd"
# Named after the service's slug.
(UNIT,) = (path for path in SYSTEMD.glob("*.service") if not path.stem.endswith("-worker"))
WORKER_UNIT = UNIT.with_name(f"{UNIT.stem}-worker.service")  # jobs-only
(SOCKET,) = SYSTEMD.glob("*.socket")
COMMAND = "gunicorn -c gunicorn_conf.py app.main:app"


def unit(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    parser.read_string(path.read_text())
    return parser


def effective(env: dict[str, str]) -> dict[str, object]:
    result = subprocess.run(
        [sys.executable, "gunicorn_conf.py"],
        cwd=ROOT,
        env=clean_env(**env),
        capture_output=True,
        text=True,
        check=True,
    )
    return dict(json.loads(result.stdout))


def test_systemd_accepts_the_units_without_a_warning(tmp_path: Path) -> None:
    # The unit's ExecStart points into the install folder; a stub stands in for it here.
    executable = unit(UNIT)["Service"]["ExecStart"].split()[0]
    stub = tmp_path / "gunicorn"
    stub.write_text("#!/bin/sh\n")
    stub.chmod(0o755)
    (tmp_path / UNIT.name).write_text(UNIT.read_text().replace(executable, str(stub)))
    (tmp_path / SOCKET.name).write_text(SOCKET.read_text())
    result = subprocess.run(
        [parts.command("systemd-analyze"), "verify", "--man=no", UNIT.name, SOCKET.name],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        env=os.environ | {"SYSTEMD_LOG_LEVEL": "notice"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout + result.stderr == ""  # unknown keys are only warnings


def test_the_unit_stops_gracefully_restarts_and_is_sandboxed() -> None:
    service = unit(UNIT)["Service"]
    assert service["ExecStart"].endswith(COMMAND)
    assert service["Type"] == "notify"  # Gunicorn reports READY=1 to systemd
    graceful = effective({"APP_ENV": "development"})["graceful_timeout"]
    assert isinstance(graceful, int)
    assert int(service["TimeoutStopSec"]) > graceful
    assert service["KillSignal"] == "SIGTERM"
    assert service["Restart"] == "on-failure"
    assert int(service["LimitNOFILE"]) >= 65536
    for key, value in {
        "NoNewPrivileges": "true",
        "ProtectSystem": "strict",
        "PrivateTmp": "true",
        "ProtectHome": "true",
        "CapabilityBoundingSet": "",
    }.items():
        assert service[key] == value, key
    assert service["User"] != "root"
    bind = effective({"APP_ENV": "development"})["bind"]
    assert isinstance(bind, list)
    assert unit(SOCKET)["Socket"]["ListenStream"] == bind[0].rsplit(":", 1)[1]  # same port


def test_the_procfile_runs_the_service_and_migrates_on_release() -> None:
    processes = dict(
        line.split(": ", 1) for line in (ROOT / "Procfile").read_text().splitlines() if line
    )
    assert processes == {
        "web": COMMAND,
        "release": "alembic upgrade head",
        "worker": "python -m app.jobs",  # jobs-only
    }


# jobs-only
def test_systemd_accepts_the_worker_unit_without_a_warning(tmp_path: Path) -> None:
    executable = unit(WORKER_UNIT)["Service"]["ExecStart"].split()[0]
    stub = tmp_path / "python"
    stub.write_text("#!/bin/sh\n")
    stub.chmod(0o755)
    (tmp_path / WORKER_UNIT.name).write_text(WORKER_UNIT.read_text().replace(executable, str(stub)))
    result = subprocess.run(
        [parts.command("systemd-analyze"), "verify", "--man=no", WORKER_UNIT.name],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
        env=os.environ | {"SYSTEMD_LOG_LEVEL": "notice"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout + result.stderr == ""


def test_the_worker_unit_waits_out_the_jobs_grace_and_is_sandboxed_alike() -> None:
    worker, web = unit(WORKER_UNIT)["Service"], unit(UNIT)["Service"]
    assert worker["ExecStart"].endswith("python -m app.jobs")
    jobs, db = JobsSettings(), DatabaseSettings()
    assert int(worker["TimeoutStopSec"]) > jobs.grace_seconds + db.command_timeout
    assert worker["KillSignal"] == "SIGTERM"
    for key in ("NoNewPrivileges", "ProtectSystem", "PrivateTmp", "CapabilityBoundingSet", "User"):
        assert worker[key] == web[key], key


# /jobs-only
