"""The container files, checked by real linters, and the image's start path run for real.

There is no container engine here, so the final stage is reproduced instead: the build stage's
own `uv sync` line installs the locked runtime dependencies into a clean tree, the tree is made
read-only, and the final stage's exact `CMD` runs as its non-root user with its `ENV`; the
`HEALTHCHECK` command must then pass against it.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from devtools.pgcluster import PgCluster, free_port
from tests.support import ROOT, clean_env, wait_for

BIN = Path(sys.executable).parent
DOCKERFILE = ROOT / "Dockerfile"


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for key, args in self.instructions if key == keyword]

    def env(self) -> dict[str, str]:
        found: dict[str, str] = {}
        for args in self.all("ENV"):
            for pair in shlex.split(args):
                key, _, value = pair.partition("=")
                found[key] = value
        return found


def stages(text: str) -> list[Stage]:
    """Dockerfile instructions by stage (continuation lines joined, comments dropped)."""
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    found: list[Stage] = []
    for line in logical:
        keyword, _, args = line.partition(" ")
        if keyword.upper() == "FROM":
            parts = args.split()
            found.append(Stage(parts[0], parts[2] if len(parts) > 2 else None))
        else:
            found[-1].instructions.append((keyword.upper(), args.strip()))
    return found


def test_hadolint_passes() -> None:
    result = subprocess.run(
        [str(BIN / "hadolint"), str(DOCKERFILE)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_image_is_multi_stage_slim_and_non_root() -> None:
    build, final = stages(DOCKERFILE.read_text())
    assert build.name == "build"
    assert any("uv sync --frozen --no-dev" in run for run in build.all("RUN"))
    assert "slim" in final.base
    assert final.all("RUN") == []  # nothing installed (no compilers) in the final stage
    assert final.all("COPY") == ["--from=build /app /app"]
    (user,) = final.all("USER")
    uid, _, gid = user.partition(":")
    assert uid.isdigit()
    assert int(uid) > 0
    assert gid.isdigit()
    env = final.env()
    assert env["PYTHONUNBUFFERED"] == "1"
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    (cmd,) = final.all("CMD")
    assert json.loads(cmd) == ["gunicorn", "-c", "gunicorn_conf.py", "app.main:app"]
    (check,) = final.all("HEALTHCHECK")
    assert "/health" in check
    assert "curl" not in check
    assert "wget" not in check
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".git", ".venv", ".env", "tests"} <= set(ignored)


def test_compose_file_follows_the_compose_specification() -> None:
    result = subprocess.run(
        [
            str(BIN / "check-jsonschema"),
            "--builtin-schema",
            "vendor.compose-spec",
            str(ROOT / "docker-compose.yml"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture
def image_root() -> Iterator[Path]:
    """The final stage's /app, built the way the Dockerfile builds it."""
    build, _final = stages(DOCKERFILE.read_text())
    base = Path(tempfile.mkdtemp(prefix="app-image-"))
    base.chmod(0o755)
    app_dir = base / "app"
    app_dir.mkdir()
    for key, args in build.instructions:
        if key == "COPY" and not args.startswith("--from"):
            *sources, target = args.split()
            for source in sources:
                src = ROOT / source
                dest = app_dir / (target if target not in {"./", "."} else src.name)
                if src.is_dir():
                    shutil.copytree(src, dest, ignore=shutil.ignore_patterns("__pycache__"))
                else:
                    shutil.copy(src, app_dir / src.name)
        elif key == "RUN":
            # The image's Python is the distribution's 3.11 here, reachable by the non-root user.
            env = clean_env() | build.env() | {"UV_PYTHON": "/usr/bin/python3.11"}
            env.pop("VIRTUAL_ENV", None)
            env["PATH"] = f"{ROOT / '.tools' / 'bin'}:{app_dir / '.venv' / 'bin'}:{env['PATH']}"
            subprocess.run(["bash", "-c", args], cwd=app_dir, env=env, check=True)
    subprocess.run(["chmod", "-R", "a-w", str(app_dir)], check=True)
    try:
        yield app_dir
    finally:
        subprocess.run(["chmod", "-R", "u+w", str(base)], check=True)
        shutil.rmtree(base)


def test_the_image_command_serves_as_its_user_from_a_read_only_tree(
    image_root: Path, migrated: PgCluster
) -> None:
    _, final = stages(DOCKERFILE.read_text())
    uid, _, gid = final.all("USER")[0].partition(":")
    env = {key: value for key, value in os.environ.items() if key in {"LANG", "TZ"}}
    env |= final.env()
    env["PATH"] = env["PATH"].replace("/app/", f"{image_root}/").replace("$PATH", "/usr/bin:/bin")
    port = free_port()
    env |= {
        "PORT": str(port),
        "HOST": "127.0.0.1",  # the image binds 0.0.0.0; tests stay on loopback
        "DATABASE_URL": migrated.url(),
        "DB__SSLMODE": "verify-full",
        "DB__SSLROOTCERT": str(migrated.ca_file),
        "SECRET_KEY": "image-test-4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c",
        "HTTP__ALLOWED_HOSTS": "127.0.0.1",
        "WEB_CONCURRENCY": "1",
    }
    as_user = ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--"]
    log = image_root.parent / "server.log"
    with log.open("w") as output:
        server = subprocess.Popen(
            [*as_user, *json.loads(final.all("CMD")[0])],
            cwd=image_root,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for(f"http://127.0.0.1:{port}/health", timeout=30)
        assert httpx.get(f"http://127.0.0.1:{port}/ready").status_code == 200
        healthcheck = json.loads(final.all("HEALTHCHECK")[0].split("CMD", 1)[1])
        probe = subprocess.run([*as_user, *healthcheck], env=env, capture_output=True, check=False)
        assert probe.returncode == 0, probe.stderr
        assert not list(image_root.rglob("*.pyc.*"))  # nothing written into the tree
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert server.returncode == 0, log.read_text()[-2000:]
