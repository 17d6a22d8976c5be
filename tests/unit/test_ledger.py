"""The documented-commands check counts only what ran: a command is missing until the ledger
holds it, whatever a test module's text says."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import docs, ledger


@pytest.fixture
def empty_ledger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "commands-run.jsonl"
    monkeypatch.setattr(docs, "LEDGER", path)
    monkeypatch.setattr(ledger, "LEDGER", path)
    return path


def test_a_command_counts_only_once_it_is_recorded(empty_ledger: Path) -> None:
    command = docs.documented("README.md", "make print-config")
    assert ("README.md", command) in ledger.not_run()
    docs.record(command)
    assert ("README.md", command) not in ledger.not_run()
    assert empty_ledger.is_file()


def test_a_command_excepted_with_a_reason_is_never_missing(empty_ledger: Path) -> None:
    missing = {command for _, command in ledger.not_run()}
    assert not [command for command in missing if command.startswith("kubectl ")]
    assert not [command for command in missing if command.startswith("systemctl ")]


def test_under_ci_a_missing_command_fails_the_check(
    empty_ledger: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(ledger, "IN_CI", True)
    monkeypatch.setattr("sys.argv", ["ledger"])
    assert ledger.main() == 1
    assert "NOT RUN: README.md: make run" in capsys.readouterr().out
    monkeypatch.setattr(ledger, "IN_CI", False)
    assert ledger.main() == 0  # on a developer's machine it only reports
