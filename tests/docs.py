"""The commands the README and docs show, so tests run them exactly as written."""

from __future__ import annotations

import json
import re
import subprocess
import textwrap
from pathlib import Path
from typing import Any

from tests.support import ROOT

# Every Markdown document of the repository that a reader may follow.
DOCUMENTS = tuple(
    path.relative_to(ROOT).as_posix()
    for pattern in ("*.md", "docs/**/*.md", "deploy/**/*.md", "lab/**/*.md")
    for path in sorted(ROOT.glob(pattern))
)
# A console block, at the margin or indented under a list item.
CONSOLE_BLOCK = re.compile(r"^( *)```console\n(.*?)^\1```", re.DOTALL | re.MULTILINE)


def shown(document: str) -> list[tuple[str, str]]:
    """Every `$ ` command of the document's console blocks, with the output shown under it."""
    found: list[tuple[str, str]] = []
    for indent, block in CONSOLE_BLOCK.findall((ROOT / document).read_text()):
        for line in textwrap.dedent(block).splitlines() if indent else block.splitlines():
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
    (found,) = [(c, output) for c, output in shown(document) if begins(c, starts)]
    return found


def begins(command: str, starts: str) -> bool:
    """Whether `command` starts with `starts` ending a word: `make test` does not begin
    `make test-all`."""
    rest = command.removeprefix(starts)
    return rest != command and (starts.endswith(" ") or not re.match(r"[\w-]", rest))


def matches_shown(shown_output: str, real_output: str) -> bool:
    """Whether the real output is what the docs show, `…` standing for any text."""
    pattern = ".*".join(re.escape(part) for part in shown_output.strip().split("…"))
    return re.fullmatch(pattern, real_output.strip(), flags=re.DOTALL) is not None


def every_command() -> dict[str, list[str]]:
    return {document: commands(document) for document in DOCUMENTS if (ROOT / document).exists()}


# What `typed()` and `spawn()` ran in this test run (tests/ledger.py reads it).
LEDGER = ROOT / ".local" / "commands-run.jsonl"


def record(command: str) -> None:
    LEDGER.parent.mkdir(exist_ok=True)
    with LEDGER.open("a") as ledger:  # one short append per line: safe across processes
        ledger.write(json.dumps(command) + "\n")


def typed(
    command: str,
    *,
    env: dict[str, str],
    cwd: Path = ROOT,
    answers: str = "",
    timeout: float = 600,
    shown: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """A command line run as a person types it: by bash, `answers` on its standard input.
    It is recorded as `shown` (the document's text, when a test filled in a placeholder)."""
    record(command if shown is None else shown)
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


def spawn(
    command: str, *, log: Path, shown: str | None = None, **options: Any
) -> subprocess.Popen[bytes]:
    """`typed()` in the background, output to `log`, in a session of its own (as a terminal's
    foreground job: a signal to its group reaches every process it started)."""
    record(command if shown is None else shown)
    with log.open("ab") as out:
        return subprocess.Popen(
            ["bash", "-c", command],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            **options,
        )
