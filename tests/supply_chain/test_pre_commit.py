"""`make hooks` installs pre-commit hooks that run the project's own `make lint` and
`make typecheck`: a commit the checks would refuse in CI is refused on the laptop, offline."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.docs import documented, typed
from tests.support import ROOT, clean_env

pytestmark = pytest.mark.slow

# Not copied: version control and built state (the environment is linked instead).
SKIP = shutil.ignore_patterns(
    ".git", ".venv", ".tools", ".local", "mutants", "htmlcov", ".coverage*"
)


def git(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    identity = ["-c", "user.name=Test", "-c", "user.email=test@example.com"]
    return subprocess.run(
        ["git", *identity, *argv], cwd=cwd, capture_output=True, text=True, timeout=300, check=False
    )


def a_checkout(tmp_path: Path) -> Path:
    """This project as a new repository, its environment linked, nothing committed by hooks."""
    project = tmp_path / "service"
    shutil.copytree(ROOT, project, ignore=SKIP, symlinks=True)
    for built in (".venv", ".tools"):
        if (ROOT / built).exists():
            (project / built).symlink_to(ROOT / built)
    git("init", "--quiet", "--initial-branch=main", cwd=project)
    git("add", "--all", cwd=project)
    assert git("commit", "--quiet", "--no-verify", "-m", "base", cwd=project).returncode == 0
    return project


def test_the_hooks_refuse_a_commit_make_lint_refuses_and_accept_a_clean_one(
    tmp_path: Path,
) -> None:
    project = a_checkout(tmp_path)
    installed = typed(documented("README.md", "make hooks"), env=clean_env(), cwd=project)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    assert (project / ".git" / "hooks" / "pre-commit").is_file()

    module = project / "app" / "shipping.py"
    module.write_text('"""Shipping."""\n\nimport os\n')  # an unused import: ruff's F401
    git("add", "app/shipping.py", cwd=project)
    refused = git("commit", "-m", "shipping", cwd=project)
    assert refused.returncode != 0
    assert "F401" in refused.stdout + refused.stderr

    module.write_text('"""Shipping."""\n\nFREE_OVER_EUR = 50\n')
    git("add", "app/shipping.py", cwd=project)
    accepted = git("commit", "-m", "shipping", cwd=project)
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr
    assert "mypy --strict (make typecheck)" in accepted.stdout + accepted.stderr
