"""The two combinations without background jobs, generated and run as a team would: nothing of
the jobs is left, and the service's own `make test` passes (the template is example and jobs;
the walkthrough's service in test_generated_service.py is jobs without the example). A file of
its own, so that `make test-all` runs it beside the walkthrough rather than after it."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.docs import documented, typed
from tests.template.support import cookiecutter, failures, job_traces, tool_env

pytestmark = pytest.mark.slow


@pytest.mark.timeout(600)
@pytest.mark.parametrize("example", ["yes", "no"])
def test_a_service_generated_without_jobs_has_none_and_passes_its_own_tests(
    tmp_path: Path, example: str
) -> None:
    """The other two of the four combinations (the template is example and jobs; the
    walkthrough's service above is jobs without the example)."""
    answers = ("project_name=Quiet Ledger", f"include_example={example}", "include_jobs=no")
    generated = cookiecutter(Path(__file__).parents[2], tmp_path, *answers)
    assert generated.returncode == 0, generated.stderr
    project = tmp_path / "quiet-ledger"
    assert job_traces(project) == []
    assert not (project / "app" / "jobs").exists()
    procfile = (project / "Procfile").read_text()
    assert procfile.splitlines() == [
        "web: gunicorn -c gunicorn_conf.py app.main:app",
        "release: alembic upgrade head",
    ]
    tested = typed(documented("README.md", "make test"), env=tool_env(), cwd=project, timeout=600)
    assert tested.returncode == 0, failures(tested.stdout + tested.stderr)
