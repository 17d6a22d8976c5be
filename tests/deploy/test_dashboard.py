"""The Grafana dashboard: the provisioning JSON is what the typed builder makes, and a reader
finds every panel titled, explained, with a unit and a Prometheus query, laid out without
overlaps. tests/server/test_alerting.py checks that every metric it queries is served."""

from __future__ import annotations

import json
from typing import Any

from devtools import dashboard
from tests.support import ROOT

BOARD = ROOT / "deploy" / "grafana" / "dashboard.json"


def board() -> dict[str, Any]:
    found: dict[str, Any] = json.loads(BOARD.read_text())
    return found


def panels() -> list[dict[str, Any]]:
    return [panel for panel in board()["panels"] if panel["type"] != "row"]


def test_the_json_is_what_the_builder_makes() -> None:
    assert BOARD.read_text() == dashboard.render(), "run `make dashboard` after changing it"


def test_every_panel_says_what_it_shows_and_queries_prometheus() -> None:
    assert len(panels()) >= 10
    for panel in panels():
        title = panel["title"]
        assert panel["description"], title
        assert panel["fieldConfig"]["defaults"]["unit"], title
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, title
        assert panel["targets"], title
        for target in panel["targets"]:  # one service's (or its workers') series
            assert 'job="$job"' in target["expr"] or 'job="$worker_job"' in target["expr"]


def test_the_rows_cover_traffic_saturation_and_the_database() -> None:
    rows = [panel["title"] for panel in board()["panels"] if panel["type"] == "row"]
    assert rows[:3] == ["Traffic, errors, duration", "Saturation", "Database and readiness"]


def test_no_two_panels_overlap() -> None:
    taken: set[tuple[int, int]] = set()
    for panel in board()["panels"]:
        grid = panel["gridPos"]
        cells = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not cells & taken, panel["title"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        taken |= cells
