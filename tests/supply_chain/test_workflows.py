"""The GitHub Actions workflows and the Dependabot file, checked by the tools the ecosystem uses:
zizmor (security audit, offline here), check-jsonschema (the schemas GitHub's own files follow);
CI runs the two test tiers as a person types them, and a release builds only after both."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support import ROOT, SERVICE

WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
DEPENDABOT = ROOT / ".github" / "dependabot.yml"
BIN = Path(sys.executable).parent  # this environment's tools


def tool(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / argv[0]), *argv[1:]],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def workflow(name: str) -> dict[Any, Any]:
    loaded: dict[Any, Any] = yaml.safe_load((ROOT / ".github" / "workflows" / name).read_text())
    return loaded


def steps(name: str) -> list[dict[str, Any]]:
    return [step for job in workflow(name)["jobs"].values() for step in job.get("steps", [])]


def test_zizmor_finds_nothing_in_the_workflows() -> None:
    # The pedantic persona: every audit's findings, the informational ones too. --offline: the
    # audits that ask GitHub's API (impostor commits, known-vulnerable actions) cannot run
    # here; every other audit does.
    audited = tool(
        "zizmor", "--offline", "--no-progress", "--persona", "pedantic", ".github/workflows"
    )
    assert audited.returncode == 0, audited.stdout + audited.stderr
    assert "No findings to report" in audited.stdout + audited.stderr


@pytest.mark.parametrize("path", WORKFLOWS, ids=[path.name for path in WORKFLOWS])
def test_each_workflow_follows_github_s_schema(path: Path) -> None:
    checked = tool("check-jsonschema", "--builtin-schema", "vendor.github-workflows", str(path))
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_dependabot_file_follows_its_schema() -> None:
    checked = tool("check-jsonschema", "--builtin-schema", "vendor.dependabot", str(DEPENDABOT))
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_dependabot_updates_every_ecosystem_with_a_cooldown() -> None:
    updates = yaml.safe_load(DEPENDABOT.read_text())["updates"]
    assert {update["package-ecosystem"] for update in updates} == {
        "uv",
        "docker",
        "github-actions",
    }
    for update in updates:
        assert update["cooldown"]["default-days"] >= 3, update["package-ecosystem"]
        assert update["groups"], update["package-ecosystem"]


def test_every_action_is_pinned_by_commit_with_its_version_named() -> None:
    for path in WORKFLOWS:
        for line in path.read_text().splitlines():
            if "uses:" in line and "uses: $/" not in line:  # $/: a workflow of this repository
                assert re.search(r"uses: [\w.-]+/[\w./-]+@[0-9a-f]{40} # v\d", line), line


def test_no_workflow_runs_with_more_than_it_asks_for() -> None:
    for path in WORKFLOWS:
        loaded = workflow(path.name)
        assert loaded["permissions"] == {}, path.name  # nothing by default
        assert "pull_request_target" not in loaded[True], path.name  # YAML reads `on` as True
        for job in loaded["jobs"].values():
            assert job["permissions"].get("contents") == "read", path.name
            if "uses" in job:  # another workflow of this repository, with these permissions
                continue
            checkout = job["steps"][0]
            assert checkout["uses"].startswith("actions/checkout@")
            assert checkout["with"]["persist-credentials"] is False


def run_steps(job: dict[str, Any]) -> list[str]:
    return [step["run"] for step in job["steps"] if "run" in step]


def test_ci_runs_each_tier_as_typed_after_the_system_packages_ci_installs() -> None:
    jobs = workflow("ci.yml")["jobs"]
    assert set(jobs) == {"test", "test-all"}
    for name, job in jobs.items():
        commands = run_steps(job)
        assert commands[:2] == ["sudo bash .ci/system-packages", f"make {name}"], name
    assert "\nbash .ci/system-packages\n" in (ROOT / ".ci" / "run").read_text()
    assert "\nmake test-all\n" in (ROOT / ".ci" / "run").read_text()
    # The only other command: cruft's check, which warns and never fails.
    (cruft,) = run_steps(jobs["test"])[2:]
    assert cruft.startswith("make template-check ||")
    assert "workflow_call" in workflow("ci.yml")[True]  # YAML reads `on` as True


def test_a_release_builds_only_after_both_tiers_pass_on_the_tagged_commit() -> None:
    jobs = workflow("release.yml")["jobs"]
    assert jobs["tests"]["uses"] == "$/.github/workflows/ci.yml"  # this repository's, this commit
    building = [name for name, job in jobs.items() if "steps" in job]
    assert building == ["image"]
    assert jobs["image"]["needs"] == "tests"


def test_ci_release_and_image_use_the_python_and_uv_the_project_uses() -> None:
    uv = re.search(r"^UV_VERSION := (\S+)$", (ROOT / "Makefile").read_text(), re.MULTILINE)
    assert uv is not None
    for name in ("ci.yml", "release.yml"):
        used = {
            step["uses"].split("@")[0]: step.get("with", {})
            for step in steps(name)
            if "uses" in step
        }
        assert used["actions/setup-python"]["python-version"] == SERVICE["python_version"], name
        assert used["astral-sh/setup-uv"]["version"] == uv.group(1), name
    # Dependabot bumps each file on its own; this fails its pull request until they agree.
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert f"FROM ghcr.io/astral-sh/uv:{uv.group(1)} AS uv" in dockerfile
    assert f"FROM python:{SERVICE['python_version']}-slim" in dockerfile
