"""The commands the README and docs show, so tests run them exactly as written."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from tests.support import ROOT

DOCUMENTS = (
    "README.md",
    "deploy/README.md",
    "docs/operations.md",
    "docs/benchmarks.md",
    "docs/tracing.md",
)
CONSOLE_BLOCK = re.compile(r"```console\n(.*?)```", re.DOTALL)


def shown(document: str) -> list[tuple[str, str]]:
    """Every `$ ` command of the document's console blocks, with the output shown under it."""
    found: list[tuple[str, str]] = []
    for block in CONSOLE_BLOCK.findall((ROOT / document).read_text()):
        for line in block.splitlines():
            if line.startswith(("$ ", "# ")):  # a user's prompt, or root's
                found.append((line[2:], ""))
            elif found and found[-1][0].endswith("\\"):  # continued, as in the shell
                found[-1] = (found[-1][0] + "\n" + line, "")
            elif found:
                command, output = found[-1]
                found[-1] = (command, output + line + "\n")
    return found


def commands(document: str) -> list[str]:
    return [command for command, _ in shown(document)]


def documented(document: str, starts: str) -> str:
    """The one command of `document` that starts with `starts`."""
    return documented_with_output(document, starts)[0]


def documented_with_output(document: str, starts: str) -> tuple[str, str]:
    (found,) = [(c, output) for c, output in shown(document) if c.startswith(starts)]
    return found


def matches_shown(shown_output: str, real_output: str) -> bool:
    """Whether the real output is what the docs show, `…` standing for any text."""
    pattern = ".*".join(re.escape(part) for part in shown_output.strip().split("…"))
    return re.fullmatch(pattern, real_output.strip(), flags=re.DOTALL) is not None


def every_command() -> dict[str, list[str]]:
    return {document: commands(document) for document in DOCUMENTS if (ROOT / document).exists()}


def typed(
    command: str,
    *,
    env: dict[str, str],
    cwd: Path = ROOT,
    answers: str = "",
    timeout: float = 600,
) -> subprocess.CompletedProcess[str]:
    """A command line run as a person types it: by bash, `answers` on its standard input."""
    return subprocess.run(
        ["bash", "-c", command],
        cwd=cwd,
        env=env,
        input=answers,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
