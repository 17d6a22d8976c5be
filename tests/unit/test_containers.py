"""The container tests never put a look-alike base image into a Docker daemon they did not start
(a developer's daemon, a shared runner's): where one answers without the base images and no
registry serves them, the tests say so instead."""

from __future__ import annotations

import subprocess
from typing import Any, NoReturn

import pytest

from tests import containers


def refuse(*args: Any, **kwargs: Any) -> NoReturn:
    raise AssertionError(f"must not run here: {args}")


def test_a_daemon_without_the_base_images_is_left_as_it_is(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(containers, "client_env", lambda: {"PATH": "/usr/bin"})
    monkeypatch.setattr(containers, "_answers", lambda env: True)
    monkeypatch.setattr(containers, "_unavailable_images", lambda env: ["postgres:15"])
    monkeypatch.setattr(containers, "_start_daemon", refuse)
    monkeypatch.setattr(subprocess, "run", refuse)  # devtools.base_images, docker tag, ...
    found = containers.prepare()
    assert found.problem is not None
    assert "has no postgres:15 and no registry serves them" in found.problem
    assert "python -m devtools.base_images" in found.problem  # what to run, on purpose
    assert found.own_daemon is None


def test_a_daemon_with_the_base_images_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(containers, "client_env", lambda: {"PATH": "/usr/bin"})
    monkeypatch.setattr(containers, "_answers", lambda env: True)
    monkeypatch.setattr(containers, "_unavailable_images", lambda env: [])
    monkeypatch.setattr(containers, "_ensure_compose", lambda env: None)
    monkeypatch.setattr(containers, "_start_daemon", refuse)
    found = containers.prepare()
    assert found.problem is None
    assert found.own_daemon is None
