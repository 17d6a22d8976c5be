"""The real parts a test needs beyond Python (servers and tools from the system's packages), and
what happens when one is missing: on a developer's machine the test is skipped with the reason
in the summary; under CI (`CI=true`) it fails, naming the part, so a runner that lost a part
never passes by testing less."""

from __future__ import annotations

import os
import shutil
from typing import NoReturn

import pytest

IN_CI = os.environ.get("CI") == "true"
# Debian's package for each command the tests run; `.ci/system-packages` installs them.
PACKAGES = {
    "wrk": "wrk",
    "pgbouncer": "pgbouncer",
    "kubectl": "kubectl",
    "mmdebstrap": "mmdebstrap",
    "promtool": "prometheus",
    "prometheus": "prometheus",
    "systemd-analyze": "systemd",
    "dockerd": "docker.io",
}


def missing(part: str, why: str) -> NoReturn:
    """Skip (or, under CI, fail) the current test because `part` cannot be had."""
    message = f"{part} is missing: {why}"
    if IN_CI:
        pytest.fail(f"{message} (CI=true: a missing real part fails the run)", pytrace=False)
    pytest.skip(message)


def find_command(name: str) -> str | None:
    """`name` on PATH, or in the system folders a non-root PATH may leave out."""
    return shutil.which(name) or next(
        (
            f"{folder}/{name}"
            for folder in ("/usr/sbin", "/sbin")
            if os.access(f"{folder}/{name}", os.X_OK)
        ),
        None,
    )


def command(name: str) -> str:
    """The path of `name`, or a skip (a failure under CI) naming the package that has it."""
    found = find_command(name)
    if found is None:
        missing(name, f"install Debian's `{PACKAGES.get(name, name)}` package")
    return found
