"""The commands the README and docs show, so tests run them exactly as written."""

from __future__ import annotations

import re

from tests.support import ROOT

DOCUMENTS = ("README.md", "deploy/README.md", "docs/operations.md", "docs/benchmarks.md")
CONSOLE_BLOCK = re.compile(r"```console\n(.*?)```", re.DOTALL)


def commands(document: str) -> list[str]:
    """Every `$ ` command of the document's console blocks, continuation lines included."""
    found: list[str] = []
    for block in CONSOLE_BLOCK.findall((ROOT / document).read_text()):
        # A continuation line joins the command before it, as in the shell.
        for line in block.splitlines():
            if line.startswith("$ "):
                found.append(line[2:])
            elif found and found[-1].endswith("\\"):
                found[-1] += "\n" + line
    return found


def documented(document: str, starts: str) -> str:
    """The one command of `document` that starts with `starts`."""
    (command,) = [c for c in commands(document) if c.startswith(starts)]
    return command


def every_command() -> dict[str, list[str]]:
    return {document: commands(document) for document in DOCUMENTS if (ROOT / document).exists()}
