"""Provide the public base images that the Dockerfile and docker-compose.yml name.

`python -m devtools.base_images` makes sure the Docker engine it talks to (`DOCKER_HOST`, or the
default) has every base image the build and the Compose file use. An image already present is
used as it is; a missing one is pulled; when no registry answers (air-gapped CI, a machine
behind a closed network) a look-alike is built from Debian's packages and tagged with the
public name, so the committed files build unchanged. Run it on purpose only: the look-alikes
then stand in for the real images in that daemon until you remove them. The container tests
run it only in a daemon they started themselves, which they remove with its images
(tests/containers.py). The images it builds:

- `python:<3.11>-slim-bookworm`: Debian bookworm (minbase) with its Python 3.11.
- `postgres:<major>`: Debian's PostgreSQL server with an entrypoint that keeps the official
  image's interface (POSTGRES_USER, POSTGRES_PASSWORD or POSTGRES_PASSWORD_FILE, POSTGRES_DB,
  PGDATA, init scripts in /docker-entrypoint-initdb.d, STOPSIGNAL SIGINT); rebuilt when that
  entrypoint changes.
- `ghcr.io/astral-sh/uv:<version>`: the `uv` binary from PyPI's wheel, in an empty image.
- `prom/prometheus:v<version>`: the server of Debian's `prometheus` package (installed on this
  machine, at that version) on the Debian base above, with the official image's interface
  (`/bin/prometheus` as the entrypoint, user nobody, data in `/prometheus`, port 9090).

Root filesystems built with mmdebstrap are cached in `~/.cache/debian-base-images/`, so a
wiped Docker store costs an import, not a rebuild.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "debian-base-images"
ENTRYPOINT = Path(__file__).with_name("postgres-entrypoint.sh")
# On the stand-in postgres image: which entrypoint it was built with (rebuilt when it changes).
ENTRYPOINT_LABEL = "devtools.stand-in.entrypoint"
# Documentation, manuals and translations are not needed in a container.
NO_CLUSTER = "'create_main_cluster = false'"
# Debian bookworm's Python 3.11 (the python stand-in; also the base the prometheus one needs).
PYTHON_PACKAGES = ["python3", "python-is-python3", "ca-certificates"]
SLIM = [f"--dpkgopt=path-exclude=/usr/share/{part}/*" for part in ("doc", "man", "locale")]


def wanted(project: Path = ROOT) -> list[str]:
    """Base images named by the Dockerfile's FROM lines (not its own stages) and the Compose
    file."""
    dockerfile = (project / "Dockerfile").read_text()
    stages = set(re.findall(r"^FROM \S+ AS (\S+)$", dockerfile, flags=re.MULTILINE))
    froms = re.findall(r"^FROM (\S+)", dockerfile, flags=re.MULTILINE)
    images = [image for image in froms if image not in stages]
    compose = yaml.safe_load((project / "docker-compose.yml").read_text())
    images += [s["image"] for s in compose["services"].values() if "build" not in s]
    return sorted(set(images))


def docker(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check)


def present(image: str) -> bool:
    return docker("image", "inspect", image, check=False).returncode == 0


def rootfs(name: str, packages: list[str], hooks: tuple[str, ...] = ()) -> Path:
    """A Debian bookworm root filesystem as a tarball, built once and cached."""
    CACHE.mkdir(parents=True, exist_ok=True)
    tarball = CACHE / f"{name}.tar"
    if not tarball.exists() and shutil.which("mmdebstrap") is None:
        raise SystemExit(
            "mmdebstrap is missing (Debian's `mmdebstrap`): no registry answers, and the "
            f"stand-in for {name} is built with it"
        )
    if not tarball.exists():
        partial = tarball.with_suffix(".partial")
        command = ["mmdebstrap", "--variant=minbase", "--format=tar", "--quiet", *SLIM]
        command += [f"--include={','.join(packages)}", *hooks, "bookworm", str(partial)]
        subprocess.run(command, check=True)
        partial.rename(tarball)
    return tarball


def build_python(image: str) -> None:
    version = image.split(":")[1].split("-", maxsplit=1)[0]
    if version != "3.11":
        raise SystemExit(f"{image}: only Python 3.11 (Debian bookworm's) can be built here")
    tarball = rootfs("python-3.11", PYTHON_PACKAGES)
    changes = ["ENV LANG=C.UTF-8", 'CMD ["python3"]']
    docker("import", *[f"--change={c}" for c in changes], str(tarball), image)


def build_postgres(image: str) -> None:
    major = image.split(":")[1].split(".", maxsplit=1)[0]
    # Debian's package would also create and start a default cluster; the entrypoint makes one.
    no_cluster = (
        '--essential-hook=mkdir -p "$1/etc/postgresql-common"',
        f'--essential-hook=echo {NO_CLUSTER} > "$1/etc/postgresql-common/createcluster.conf"',
    )
    tarball = rootfs(f"postgres-{major}", [f"postgresql-{major}", "gosu"], no_cluster)
    with tempfile.TemporaryDirectory() as context:
        base = f"debian-base-images/postgres-rootfs:{major}"
        docker("import", str(tarball), base)
        shutil.copy(ENTRYPOINT, Path(context) / "docker-entrypoint.sh")
        (Path(context) / "Dockerfile").write_text(
            f"FROM {base}\n"
            f"LABEL {ENTRYPOINT_LABEL}={entrypoint_digest()}\n"
            "COPY docker-entrypoint.sh /usr/local/bin/\n"
            f"ENV PATH=/usr/lib/postgresql/{major}/bin:$PATH LANG=C.UTF-8 "
            "PGDATA=/var/lib/postgresql/data\n"
            "VOLUME /var/lib/postgresql/data\n"
            "STOPSIGNAL SIGINT\n"
            "EXPOSE 5432\n"
            'ENTRYPOINT ["docker-entrypoint.sh"]\n'
            'CMD ["postgres"]\n'
        )
        docker("build", "--quiet", "-t", image, context)


def build_uv(image: str) -> None:
    version = image.split(":")[1]
    with tempfile.TemporaryDirectory() as folder:
        context = Path(folder)
        # The interpreter the venv was made from has pip; uv-made venvs have none.
        python = Path(sys.base_prefix) / "bin" / "python3"
        pip = [str(python), "-m", "pip", "download", "--quiet", "--no-deps"]
        subprocess.run([*pip, "--only-binary=:all:", "-d", folder, f"uv=={version}"], check=True)
        (wheel,) = context.glob("uv-*.whl")
        with zipfile.ZipFile(wheel) as archive:
            for member in archive.namelist():
                if re.fullmatch(r"uv-[^/]+\.data/scripts/uvx?", member):
                    target = context / Path(member).name
                    target.write_bytes(archive.read(member))
                    target.chmod(0o755)
        (context / "Dockerfile").write_text("FROM scratch\nCOPY uv uvx /\n")
        docker("build", "--quiet", "-t", image, str(context))


def build_prometheus(image: str) -> None:
    version = image.split(":v")[1]
    server = shutil.which("prometheus") or "/usr/bin/prometheus"
    reported = subprocess.run([server, "--version"], capture_output=True, text=True, check=False)
    if not re.search(rf"version {re.escape(version)}\b", reported.stdout + reported.stderr):
        raise SystemExit(f"{image}: needs Debian's prometheus package at {version} here")
    base = "debian-base-images/python-rootfs:3.11"
    tarball = rootfs("python-3.11", PYTHON_PACKAGES)  # the Python base's, cached: no new build
    docker("import", str(tarball), base)
    with tempfile.TemporaryDirectory() as folder:
        context = Path(folder)
        shutil.copy(server, context / "prometheus")
        (context / "data").mkdir()
        (context / "Dockerfile").write_text(
            f"FROM {base}\n"
            "COPY prometheus /bin/prometheus\n"
            "COPY --chown=65534:65534 data /prometheus\n"
            "USER 65534\n"
            "WORKDIR /prometheus\n"
            "EXPOSE 9090\n"
            'ENTRYPOINT ["/bin/prometheus"]\n'
            'CMD ["--config.file=/etc/prometheus/prometheus.yml", '
            '"--storage.tsdb.path=/prometheus"]\n'
        )
        docker("build", "--quiet", "-t", image, str(context))


BUILDERS = {
    "python:": build_python,
    "postgres:": build_postgres,
    "ghcr.io/astral-sh/uv:": build_uv,
    "prom/prometheus:": build_prometheus,
}


@contextmanager
def locked() -> Iterator[None]:
    """One provider at a time: two test suites may start on the same machine together."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with (CACHE / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def entrypoint_digest() -> str:
    return hashlib.sha256(ENTRYPOINT.read_bytes()).hexdigest()[:16]


def outdated_stand_in(image: str) -> bool:
    """A postgres stand-in built from another entrypoint than today's (the official image,
    which sets PG_VERSION, never is)."""
    if not image.startswith("postgres:"):
        return False
    found = docker("image", "inspect", "--format", "{{json .Config}}", image, check=False)
    if found.returncode != 0:
        return False  # not present at all
    config = json.loads(found.stdout)
    if any(entry.startswith("PG_VERSION=") for entry in config.get("Env") or []):
        return False
    return (config.get("Labels") or {}).get(ENTRYPOINT_LABEL) != entrypoint_digest()


def provide(image: str) -> str:
    """Make `image` available; say how."""
    if present(image) and not outdated_stand_in(image):
        return "present"
    if docker("pull", "--quiet", image, check=False).returncode == 0:
        return "pulled"
    builder = next((b for prefix, b in BUILDERS.items() if image.startswith(prefix)), None)
    if builder is None:
        raise SystemExit(f"{image}: not present, not pullable, and no Debian recipe for it")
    builder(image)
    return "built locally (no registry answered)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", type=Path, default=ROOT)
    args = parser.parse_args()
    with locked():
        for image in wanted(args.project):
            print(f"{image}: {provide(image)}", flush=True)


if __name__ == "__main__":
    main()
