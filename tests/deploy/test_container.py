"""The container files, read without an engine: hadolint, the Dockerfile's policy, the Compose
file against the Compose specification. The image and the stack run for real in test_image.py
and test_compose.py.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from tests.support import ROOT

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
        elif found:
            found[-1].instructions.append((keyword.upper(), args.strip()))
    return found


def test_hadolint_passes() -> None:
    result = subprocess.run(
        [str(BIN / "hadolint"), str(DOCKERFILE)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_build_needs_no_registry_but_its_base_images() -> None:
    text = DOCKERFILE.read_text()
    assert not text.startswith("# syntax")  # a frontend image BuildKit would have to pull
    uv, build, final = stages(text)
    assert uv.base.startswith("ghcr.io/astral-sh/uv:")
    assert build.base == final.base
    assert build.base.startswith("python:")
    # Written out, not `${ARG}`s: Dependabot updates only the images it can read in FROM lines.
    assert "$" not in uv.base + build.base
    (sync,) = [run for run in build.all("RUN") if "uv sync" in run]
    # The CA bundle for a TLS-intercepting proxy is a build secret, never a layer.
    assert "--mount=type=secret,id=ca-certificates" in sync
    assert not [copy for copy in build.all("COPY") if "cert" in copy]


def test_the_image_is_multi_stage_slim_and_non_root() -> None:
    _, build, final = stages(DOCKERFILE.read_text())
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
