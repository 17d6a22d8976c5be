"""Every command the README and docs show is run, as written, by a test: a command nothing runs
is a defect. Each one is either named here with the test module that runs it (which takes the
command from the document, so the two cannot drift), or listed with why it cannot run here.

In a generated service, the template's own tests (tests/template/, not copied) are the ones
that ran its `make test` and its cruft commands, before it was generated."""

from __future__ import annotations

import pytest

from tests.docs import every_command
from tests.support import ROOT

# (document, how the command starts) -> the test module that runs it
RUN_BY = {
    ("README.md", "make run"): "tests/server/test_make_run.py",
    ("README.md", "make test"): "tests/template/generated.py",
    ("README.md", "curl "): "tests/server/test_make_run.py",
    ("README.md", "make print-config"): "tests/server/test_make_targets.py",
    ("README.md", "make migrate"): "tests/server/test_make_targets.py",
    ("README.md", "make bench-quick"): "tests/server/test_make_targets.py",
    ("README.md", "pip install"): "tests/template/test_cookiecutter.py",
    ("README.md", "cruft "): "tests/template/test_cookiecutter.py",
    ("README.md", "cookiecutter "): "tests/template/test_cookiecutter.py",
    ("README.md", "git diff HEAD"): "tests/template/test_cookiecutter.py",
    ("README.md", "make sbom"): "tests/supply_chain/test_dependencies.py",
    ("README.md", "make audit"): "tests/supply_chain/test_dependencies.py",
    ("README.md", "make hooks"): "tests/supply_chain/test_pre_commit.py",
    ("deploy/README.md", "docker build"): "tests/deploy/test_image.py",
    ("deploy/README.md", "docker compose up"): "tests/deploy/test_compose.py",
}
TEMPLATE_TESTS = "tests/template/"
NOT_RUN_HERE = {
    ("deploy/README.md", "kubectl "): "needs a Kubernetes cluster; the manifests are rendered "
    "by `kubectl kustomize` and validated against the API schemas (tests/deploy)",
    ("deploy/README.md", "useradd "): "changes the host's users: systemd install steps",
    ("deploy/README.md", "git clone "): "the systemd install steps, on a host of your own",
    ("deploy/README.md", "install -m 600"): "writes under /etc: systemd install steps",
    ("deploy/README.md", "cp deploy/systemd"): "writes under /etc: systemd install steps; the "
    "units are checked by `systemd-analyze verify` (tests/deploy/test_systemd.py)",
    ("deploy/README.md", "systemctl "): "needs systemd as PID 1 (not in containers or CI)",
}

DOCUMENTED = [(doc, command) for doc, commands in every_command().items() for command in commands]


def _owner(document: str, command: str) -> tuple[str, str] | None:
    for key in (*RUN_BY, *NOT_RUN_HERE):
        if key[0] == document and command.startswith(key[1]):
            return key
    return None


@pytest.mark.parametrize(("document", "command"), DOCUMENTED, ids=[c for _, c in DOCUMENTED])
def test_a_documented_command_is_run_by_a_test_or_says_why_not(document: str, command: str) -> None:
    key = _owner(document, command)
    assert key is not None, f"{document}: nothing runs `{command}`"
    if key in RUN_BY and not _run_by_the_template(key):
        runner = (ROOT / RUN_BY[key]).read_text()
        assert f'"{key[1].strip()}' in runner, f"{RUN_BY[key]} does not take `{key[1]}` from docs"


def _run_by_the_template(key: tuple[str, str]) -> bool:
    """Run by the template repository's suite, which a generated service does not have."""
    return RUN_BY[key].startswith(TEMPLATE_TESTS) and not (ROOT / TEMPLATE_TESTS).is_dir()


def test_every_entry_here_still_names_a_documented_command() -> None:
    used = {_owner(document, command) for document, command in DOCUMENTED}
    # A generated service's README lacks the template-only sections those tests ran.
    optional = {key for key in RUN_BY if _run_by_the_template(key)}
    assert (set(RUN_BY) | set(NOT_RUN_HERE)) - optional <= used
