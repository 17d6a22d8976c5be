"""Starts the generated service's own `make test` once collection is done (generated.py)."""

from __future__ import annotations

import pytest

from tests.containers import shared
from tests.template.generated import RUNNING, SLUG, Generated

NEEDS_IT = "test_a_generated_service_passes_its_own_tests_and_boots"


def pytest_collection_finish(session: pytest.Session) -> None:
    if any(item.get_closest_marker("docker") for item in session.items):
        # A daemon this session starts must be up before the generated suite looks; the
        # generated service's images go, so that finding them later proves its suite built them.
        docker = shared()
        if docker.problem is None:
            docker.run(f"docker image rm --force {SLUG} {SLUG}:local")
    if any(item.name == NEEDS_IT for item in session.items) and not RUNNING:
        generated = Generated()
        generated.start()
        RUNNING.append(generated)


def pytest_sessionfinish() -> None:
    while RUNNING:
        RUNNING.pop().stop()
