"""The shape of `app/` a forker reads: short functions, no complexity waived, and every
security rule waived only with its reason."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from tests.support import ROOT

MAX_FUNCTION_LINES = 40
# Ruff's complexity rules: too many branches, returns, statements, arguments; McCabe.
COMPLEXITY_NOQA = re.compile(r"noqa:[^#\n]*\b(C901|PLR09\d\d)\b")
# Ruff's S rules are bandit's checks; a waiver of one names its reason after " - ".
SECURITY_NOQA = re.compile(r"noqa:[^#\n]*\bS\d{3}\b")
JUSTIFIED = re.compile(r"noqa:[\w, ]+ - \S")


def python_files() -> list[str]:
    paths = [*sorted((ROOT / "app").rglob("*.py")), ROOT / "gunicorn_conf.py"]
    return [str(path.relative_to(ROOT)) for path in paths]


def test_no_function_is_longer_than_forty_lines() -> None:
    long = [
        f"{name}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for name in python_files()
        for node in ast.walk(ast.parse((ROOT / name).read_text()))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno is not None
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert long == []


def test_no_complexity_rule_is_waived() -> None:
    waived = [
        f"{name}:{number}"
        for name in python_files()
        for number, line in enumerate((ROOT / name).read_text().splitlines(), start=1)
        if COMPLEXITY_NOQA.search(line)
    ]
    assert waived == []


def waivable_files() -> list[Path]:
    """Everything but the tests, which waive S rules per file in pyproject.toml, with reasons."""
    folders = ("app", "devtools", "bench", "hooks", "migrations")
    found = [path for folder in folders for path in sorted((ROOT / folder).rglob("*.py"))]
    return [*found, ROOT / "gunicorn_conf.py"]


def test_every_security_waiver_says_why() -> None:
    unexplained = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in waivable_files()
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if SECURITY_NOQA.search(line) and not JUSTIFIED.search(line)
    ]
    assert unexplained == []
