"""A service generated with the example and without background jobs, as a team would: nothing
of the jobs is left, and its own `make test` passes. The template itself is example and jobs,
the walkthrough's service (test_generated_service.py) jobs without the example, and
test_generated_bare.py neither. One combination per file, so that `make test-all` runs them
side by side."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.template.support import check_without_jobs

pytestmark = pytest.mark.slow


@pytest.mark.timeout(600)
def test_a_service_with_the_example_and_without_jobs_has_none_and_passes_its_own_tests(
    tmp_path: Path,
) -> None:
    check_without_jobs(Path(__file__).parents[2], tmp_path, example="yes")
