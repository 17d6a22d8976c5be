"""The repository as a cookiecutter/cruft template: what it generates is the reference service,
any name gives a lint-clean, strictly typed service, and the README's commands work as typed.
Not copied into generated services (hooks/post_gen_project.py); the one generated service whose
own tests run is in test_generated_service.py."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests import run
from tests.docs import documented, typed
from tests.support import ROOT
from tests.template.support import (
    BIN,
    REFERENCE,
    cookiecutter,
    example_traces,
    files_of,
    git,
    identity_left,
    run_in,
    tool_env,
)

pytestmark = pytest.mark.slow
# What generation leaves out: the template's machinery and its laboratory (README: What a
# generated service carries).
TEMPLATE_ONLY_PATHS = (
    "cookiecutter.json",
    "hooks/",
    "{{cookiecutter.project_slug}}/",
    "tests/template/",
    "lab/",
)
# The blocks hooks/post_gen_project.py leaves out of every file.
TEMPLATE_ONLY = re.compile(
    r"<!-- template-only[^>]*-->.*?<!-- /template-only -->\n*"
    r"|^ *# template-only\n.*?^ *# /template-only\n\n?",
    re.DOTALL | re.M,
)


def committed_files() -> set[str]:
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return {name for name in listed if (ROOT / name).is_file()}


def test_defaults_reproduce_the_reference_service(tmp_path: Path) -> None:
    result = cookiecutter(ROOT, tmp_path)
    assert result.returncode == 0, result.stderr
    generated = files_of(tmp_path / str(REFERENCE["slug"]))
    expected = {name for name in committed_files() if not name.startswith(TEMPLATE_ONLY_PATHS)}
    assert set(generated) == expected
    for name in expected:
        root = (ROOT / name).read_bytes()
        if name != "uv.lock" and TEMPLATE_ONLY.search(text := root.decode(errors="replace")):
            root = TEMPLATE_ONLY.sub("", text).encode()
        assert generated[name] == root, f"{name} differs from the root's"
    assert "cruft update" in result.stderr  # the next steps were printed


@pytest.mark.parametrize(
    ("answer", "named"),
    [
        ("project_slug=Billing_API", "project_slug"),
        ("project_slug=-billing", "project_slug"),
        ("port=80", "port"),
        ("database_name=1st", "database_name"),
        ("project_slug=" + "a" * 41, "project_slug"),
        ('project_name=The "Quoted" API', "project_name"),
        ("project_name=" + "N" * 61, "project_name"),
        ("description=50% faster", "description"),
        ("author=Team {A}", "author"),
    ],
)
def test_an_invalid_answer_is_refused_before_anything_is_written(
    tmp_path: Path, answer: str, named: str
) -> None:
    result = cookiecutter(ROOT, tmp_path, answer)
    assert result.returncode != 0
    assert f"{named}=" in result.stderr
    assert "is not valid: use" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_the_default_slug_is_valid_for_any_project_name(tmp_path: Path) -> None:
    """Only an explicit slug answer can be refused: the derived one is transliterated."""
    result = cookiecutter(ROOT, tmp_path, "project_name=Çà et Là — Ärger GmbH")
    assert result.returncode == 0, result.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["ca-et-la-arger-gmbh"]


LONG_SLUG = "payments-ledger-reconciliation-engine-eu"  # the slug limit, 40
LONGEST_DATABASE = ("ledger_" * 10)[:63]  # PostgreSQL's identifier limit


@pytest.mark.parametrize(
    ("answers", "slug"),
    [
        (("project_name=Pay", "port=65535"), "pay"),
        (("project_name=Ledger Reconciler", "port=1024"), "ledger-reconciler"),
        (("project_name=Ünïcode Façade",), "unicode-facade"),
        (("project_name=2FA Gateway 3",), "service-2fa-gateway-3"),
        (
            (
                "project_name=Payments Ledger Reconciliation Engine (EU)",
                f"database_name={LONGEST_DATABASE}",
            ),
            LONG_SLUG,
        ),
    ],
    ids=["short", "several-words", "accents", "digits", "longest"],
)
def test_any_name_generates_a_lint_clean_typed_service(
    tmp_path: Path, answers: tuple[str, ...], slug: str
) -> None:
    """The identity is substituted as text: every name, slug, port and database length must
    still give formatted, lint-clean, strictly typed code, and workflows its own tools accept.
    The checks run with this checkout's tools (the same locked versions a generated service
    installs) and one mypy cache for all names, so that only what a name changed is checked
    again: its own `make test` runs in test_generated_service.py."""
    generated = cookiecutter(ROOT, tmp_path, *answers)
    assert generated.returncode == 0, generated.stderr
    assert [p.name for p in tmp_path.iterdir()] == [slug]
    project = tmp_path / slug
    assert identity_left(project) == []
    tools = [
        [str(BIN / "ruff"), "check", "."],
        [str(BIN / "ruff"), "format", "--check", "."],
        [str(BIN / "mypy"), "--cache-dir", str(run.folder() / "mypy-cache")],
        # Its own CI files, audited by its own tools (zizmor, the schemas, the make targets).
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests/supply_chain/test_workflows.py",
        ],
    ]
    with run.locked("mypy-cache"):  # one writer of the shared cache at a time
        for command in tools:
            checked = run_in(project, *command)
            assert checked.returncode == 0, (checked.stdout + checked.stderr)[-4000:]


def test_the_workflows_use_the_python_version_answered(tmp_path: Path) -> None:
    generated = cookiecutter(ROOT, tmp_path, "project_name=Later", "python_version=3.13")
    assert generated.returncode == 0, generated.stderr
    for name in ("ci.yml", "release.yml"):
        workflow = (tmp_path / "later" / ".github" / "workflows" / name).read_text()
        assert 'python-version: "3.13"' in workflow, name
        assert 'python-version: "3.11"' not in workflow, name


def shell(
    command: str, cwd: Path, answers: str = "", template: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """A README command as typed (`<template>` filled in), with cruft and cookiecutter on PATH
    as after `pip install cookiecutter cruft`; `answers` go to the questions it asks."""
    filled = command.replace("<template>", str(template)) if template is not None else command
    env = tool_env()
    env["PATH"] = f"{BIN}:{env['PATH']}"
    return typed(filled, env=env, cwd=cwd, answers=answers, shown=command)


def test_pip_installs_the_template_tools(tmp_path: Path) -> None:
    """The README's first command, in a new virtual environment (PyPI)."""
    subprocess.run([sys.executable, "-m", "venv", str(tmp_path / "venv")], check=True)
    env = tool_env()
    env["PATH"] = f"{tmp_path / 'venv' / 'bin'}:{env['PATH']}"
    installed = typed(documented("README.md", "pip install"), env=env)
    assert installed.returncode == 0, installed.stderr[-3000:]
    for tool in ("cruft", "cookiecutter"):
        assert (tmp_path / "venv" / "bin" / tool).is_file()


def test_cruft_creates_checks_and_updates_a_service(tmp_path: Path) -> None:
    """The README's commands, in order: create (answering the questions), check, update
    after the template moved on, review with git diff."""
    template = tmp_path / "template"
    git("clone", "--quiet", str(ROOT), str(template), cwd=tmp_path)
    (tmp_path / "out").mkdir()
    # Nine questions: a name, then the defaults derived from it (the example and jobs kept).
    create = documented("README.md", "cruft create")
    created = shell(create, tmp_path / "out", "Ledger\n" + "\n" * 8, template)
    assert created.returncode == 0, created.stdout + created.stderr
    project = tmp_path / "out" / "ledger"
    assert (project / ".cruft.json").is_file()
    assert (project / "app" / "items").is_dir()
    assert identity_left(project) == []
    git("init", "--quiet", cwd=project)
    git("add", "-A", cwd=project)
    git("commit", "--quiet", "-m", "generated", cwd=project)

    check = documented("README.md", "cruft check")
    assert shell(check, project).returncode == 0
    # The template moves on: a change that mentions the identity, so the hook's rewrite shows.
    readme = template / "README.md"
    readme.write_text(readme.read_text() + f"\nRunbook for {REFERENCE['name']}: TBD.\n")
    git("commit", "--quiet", "-am", "README: runbook stub", cwd=template)
    assert shell(check, project).returncode == 1  # out of date
    # The service's CI says so, as a warning: its workflow's step, run as the runner would.
    ci_check = ci_step(project, "make template-check")
    warned = shell(ci_check, project)
    assert warned.returncode == 0, warned.stdout + warned.stderr
    assert "::warning::The template has moved on" in warned.stdout

    updated = shell(documented("README.md", "cruft update"), project)
    assert updated.returncode == 0, updated.stdout + updated.stderr
    assert "Runbook for Ledger: TBD." in (project / "README.md").read_text()
    assert shell(check, project).returncode == 0
    review = shell(documented("README.md", "git diff HEAD"), project)
    assert "+Runbook for Ledger: TBD." in review.stdout
    assert "::warning::" not in shell(ci_check, project).stdout


def ci_step(project: Path, starts: str) -> str:
    """The command of the project's CI workflow step that starts with `starts`."""
    workflow = yaml.safe_load((project / ".github" / "workflows" / "ci.yml").read_text())
    (command,) = [
        step["run"]
        for job in workflow["jobs"].values()
        for step in job["steps"]
        if step.get("run", "").startswith(starts)
    ]
    return str(command)


def cookiecutter_as_shown(
    tmp_path: Path, project_name: str
) -> tuple[subprocess.CompletedProcess[str], Path]:
    """The README's plain cookiecutter command for `project_name`, run on a clone of this
    repository; its result and the clone."""
    template = tmp_path / "template"
    git("clone", "--quiet", str(ROOT), str(template), cwd=tmp_path)
    starts = f'cookiecutter <template> --no-input project_name="{project_name}"'
    return shell(documented("README.md", starts), tmp_path, "", template), template


def test_cookiecutter_then_cruft_link(tmp_path: Path) -> None:
    """Plain cookiecutter as the README shows it, then adopting cruft with `cruft link`."""
    generated, template = cookiecutter_as_shown(tmp_path, "Billing API")
    assert generated.returncode == 0, generated.stderr
    project = tmp_path / "billing-api"
    assert "PORT=8080" in (project / ".env.example").read_text()
    # The questions again (same answers), then the template commit (the latest).
    answers = "Billing API\n\n\n\n\n8080\n\n\n\n\n"
    linked = shell(documented("README.md", "cruft link"), project, answers, template)
    assert linked.returncode == 0, linked.stdout + linked.stderr
    assert (project / ".cruft.json").is_file()
    assert shell(documented("README.md", "cruft check"), project).returncode == 0


def test_a_service_without_the_example_has_no_trace_of_it(tmp_path: Path) -> None:
    """The README's command; the service's own `make test` runs in
    test_a_generated_service_passes_its_own_tests_and_boots (also without the example)."""
    generated, _ = cookiecutter_as_shown(tmp_path, "Payments")
    assert generated.returncode == 0, generated.stderr
    project = tmp_path / "payments"
    assert not (project / "app" / "items").exists()
    assert not (project / "tests" / "integration" / "test_items.py").exists()
    # The job queue's migration (jobs are on by default) is then the first one, and the
    # idempotency keys' revises it.
    queue, keys = sorted((project / "migrations" / "versions").glob("*.py"))
    assert (queue.name, keys.name) == (
        "20261205_0002_job_queue.py",
        "20261205_0004_idempotency_keys.py",
    )
    assert "down_revision: str | None = None\n" in queue.read_text()
    assert 'down_revision: str | None = "0002"\n' in keys.read_text()
    assert "Revises: 0002\n" in keys.read_text()
    assert example_traces(project) == []
    assert "/api/v1/items" not in (project / "README.md").read_text()
    assert "/api/v1/items" not in (project / "docs" / "tracing.md").read_text()
    assert "ROUTERS: list[APIRouter] = []" in (project / "app" / "domains.py").read_text()
