"""A real part a test needs and cannot have: skipped with its reason on a developer's machine,
a failure naming it under CI, never a silent pass."""

from __future__ import annotations

import pytest

from tests import parts

MISSING = "no-such-tool-for-this-test"


def test_a_missing_command_is_a_skip_that_names_it_on_a_developers_machine(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(parts, "IN_CI", False)
    with pytest.raises(pytest.skip.Exception, match=f"{MISSING} is missing"):
        parts.command(MISSING)


def test_a_missing_command_fails_the_run_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parts, "IN_CI", True)
    with pytest.raises(pytest.fail.Exception, match=f"{MISSING} is missing.*CI=true"):
        parts.command(MISSING)


def test_a_missing_docker_engine_names_the_package_and_the_reason(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(parts, "IN_CI", True)
    with pytest.raises(pytest.fail.Exception, match="a Docker engine is missing: no daemon"):
        parts.missing("a Docker engine", "no daemon")
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(pytest.fail.Exception, match="install Debian's `wrk` package"):
        parts.command("wrk")


def test_a_present_command_is_found() -> None:
    assert parts.command("bash").endswith("/bash")
