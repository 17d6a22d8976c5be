"""A service generated with non-default answers, whose own `make test` runs in the background.

Its suite takes about as long as this one, so it starts as soon as collection is done
(tests/template/conftest.py) and runs alongside the rest of the session on the other core; the
test that needs its result waits for it. Sequential, the two suites took 671 s on this 2-core
machine, over the 10-minute budget.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from tests.docs import documented
from tests.support import ALONGSIDE, ROOT, clean_env

# Without the example domain: the generated service's own suite then proves nothing in it
# needs `items`.
ANSWERS = (
    "project_name=My Billing API",
    "port=9123",
    "database_name=billing",
    "include_example=no",
)
SLUG = "my-billing-api"
BIN = Path(sys.executable).parent


def tool_env() -> dict[str, str]:
    """The environment a developer's shell would have: none of this checkout's venv or settings,
    uv on PATH (as if installed), so a generated project does not download it again."""
    env = clean_env()
    env.pop("VIRTUAL_ENV", None)
    paths = [p for p in env.get("PATH", "").split(os.pathsep) if not p.startswith(str(ROOT))]
    env["PATH"] = os.pathsep.join([str(ROOT / ".tools" / "bin"), *paths])
    return env


def cookiecutter(
    template: Path | str, out: Path, *answers: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "cookiecutter"), "--no-input", str(template), "-o", str(out), *answers],
        capture_output=True,
        text=True,
        check=False,
        env=tool_env(),
    )


@dataclass
class Generated:
    base: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="app-generated-")))
    generation: subprocess.CompletedProcess[str] | None = None
    make_test: subprocess.Popen[str] | None = None

    @property
    def project(self) -> Path:
        return self.base / SLUG

    @property
    def log(self) -> Path:
        return self.base / "make-test.log"

    def start(self) -> None:
        self.generation = cookiecutter(ROOT, self.base, *ANSWERS)
        if self.generation.returncode != 0:
            return
        with self.log.open("w") as log:
            self.make_test = subprocess.Popen(
                ["bash", "-c", documented("README.md", "make test")],
                cwd=self.project,
                env=tool_env() | {ALONGSIDE: "1"},
                stdout=log,
                stderr=subprocess.STDOUT,
                text=True,
                start_new_session=True,
            )

    def wait(self, timeout: float) -> int:
        assert self.make_test is not None
        return self.make_test.wait(timeout=timeout)

    def stop(self) -> None:
        if self.make_test is not None and self.make_test.poll() is None:
            os.killpg(self.make_test.pid, 15)
            self.make_test.wait(timeout=30)
        shutil.rmtree(self.base, ignore_errors=True)


RUNNING: list[Generated] = []
