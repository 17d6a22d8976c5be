"""A service generated with neither the example nor background jobs, as a team would: nothing
of the jobs is left, and its own `make test` passes (the other combinations: see
test_generated_without_jobs.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.template.support import check_without_jobs

pytestmark = pytest.mark.slow


@pytest.mark.timeout(600)
def test_a_service_without_example_or_jobs_has_no_jobs_and_passes_its_own_tests(
    tmp_path: Path,
) -> None:
    check_without_jobs(Path(__file__).parents[2], tmp_path, example="no")
