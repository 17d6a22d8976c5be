"""Helpers of the template's own tests: generating services and running commands in them."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

from tests.docs import documented, typed
from tests.support import ROOT, clean_env, unmeasured

BIN = Path(sys.executable).parent
REFERENCE = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["service"]


def tool_env() -> dict[str, str]:
    """The environment a developer's shell would have: none of this checkout's venv, settings
    or coverage measurement, uv on PATH (as if installed), so a generated project does not
    download it again."""
    env = unmeasured(clean_env())
    env.pop("VIRTUAL_ENV", None)
    paths = [p for p in env.get("PATH", "").split(os.pathsep) if not p.startswith(str(ROOT))]
    env["PATH"] = os.pathsep.join([str(ROOT / ".tools" / "bin"), *paths])
    return env


def cookiecutter(
    template: Path | str, out: Path, *answers: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "cookiecutter"), "--no-input", str(template), "-o", str(out), *answers],
        capture_output=True,
        text=True,
        check=False,
        env=tool_env(),
    )


def run_in(project: Path, *argv: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv,
        cwd=project,
        env=tool_env(),
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
    )


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def files_of(folder: Path) -> dict[str, bytes]:
    return {
        path.relative_to(folder).as_posix(): path.read_bytes()
        for path in folder.rglob("*")
        if path.is_file() and ".git" not in path.relative_to(folder).parts
    }


def identity_left(folder: Path) -> list[str]:
    """Where any of the reference identity still appears."""
    tokens = [REFERENCE["slug"], REFERENCE["name"], REFERENCE["database"]]
    return [
        f"{name}: {token}"
        for name, content in files_of(folder).items()
        for token in tokens
        if token.encode() in content or token in name
    ]


def example_traces(project: Path) -> list[str]:
    """Every mention of the example domain left in the service's code and migrations."""
    return [
        f"{path.relative_to(project)}:{number}"
        for folder in ("app", "migrations", "bench")
        for path in sorted((project / folder).rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if re.search(r"\bitems?\b|\bItem", line.replace(".items()", ""))
    ]


JOB_WORDS = re.compile(r"jobs-only|pgqueuer|croniter|app\.jobs|JOBS__|^worker: |job queue", re.I)


def job_traces(project: Path) -> list[str]:
    """Every mention of background jobs left anywhere in the service (its measured benchmark
    record aside, which says what ran)."""
    return [
        f"{path.relative_to(project)}:{number}"
        for path in sorted(project.rglob("*"))
        if path.is_file()
        and ".git" not in path.parts
        and ".venv" not in path.parts
        and path.relative_to(project).as_posix() != "docs/benchmarks.md"
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), start=1)
        if JOB_WORDS.search(line)
    ]


def failures(output: str) -> str:
    """pytest's failures section, not the tail (mostly captured log lines)."""
    return (
        output[output.find("= FAILURES =") :][:6000] if "= FAILURES =" in output else output[-6000:]
    )


def check_without_jobs(template: Path, out: Path, example: str) -> None:
    """A service generated without jobs has nothing of them left, and its own `make test`
    passes, typed as the README shows it."""
    answers = ("project_name=Quiet Ledger", f"include_example={example}", "include_jobs=no")
    generated = cookiecutter(template, out, *answers)
    assert generated.returncode == 0, generated.stderr
    project = out / "quiet-ledger"
    assert job_traces(project) == []
    assert not (project / "app" / "jobs").exists()
    procfile = (project / "Procfile").read_text()
    assert procfile.splitlines() == [
        "web: gunicorn -c gunicorn_conf.py app.main:app",
        "release: alembic upgrade head",
    ]
    tested = typed(documented("README.md", "make test"), env=tool_env(), cwd=project, timeout=600)
    assert tested.returncode == 0, failures(tested.stdout + tested.stderr)
