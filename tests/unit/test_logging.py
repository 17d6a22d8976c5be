"""The logging configuration: a logger follows the configuration in force when it writes."""

from __future__ import annotations

import json

import pytest
import structlog

from app.logging import configure_logging
from app.settings import LogSettings


def test_a_logger_used_before_a_new_configuration_writes_by_the_new_one(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """As module loggers are: the master configures before the fork, the app again after it,
    and a test process many times over."""
    log = structlog.get_logger("app.test")
    configure_logging(LogSettings(format="console"), production=False)
    log.info("first")
    configure_logging(LogSettings(format="json"), production=True)
    capsys.readouterr()
    log.info("second", n=2)
    assert json.loads(capsys.readouterr().err) | {"timestamp": None} == {
        "event": "second",
        "n": 2,
        "level": "info",
        "logger": "app.test",
        "timestamp": None,
    }
