"""The shipped alerting rules, offline: promtool accepts them and their unit tests pass (each
alert fires for the series it should, stays silent for healthy ones), every alert has a
severity and a runbook section, the SLO's latency threshold is a bucket bound, and the
Kubernetes component carries the same rules and scrapes what the pods serve."""

from __future__ import annotations

import re
import subprocess
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]  # ships no py.typed
import yaml

from app.metrics import LATENCY_BUCKETS
from tests import parts
from tests.deploy.test_kubernetes import KUBERNETES_VERSION, render
from tests.docs import documented, typed
from tests.support import ROOT, SERVICE, clean_env

RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
RUNBOOKS = ROOT / "docs" / "runbooks.md"
RUNBOOK_BASE = f"https://git.example.com/{SERVICE['slug']}/-/blob/main/docs/runbooks.md"
OPERATOR_KINDS = {"PrometheusRule", "ServiceMonitor", "PodMonitor"}


def groups() -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = yaml.safe_load(RULES.read_text())["groups"]
    return found


def rules() -> list[dict[str, Any]]:
    return [rule for group in groups() for rule in group["rules"]]


def alerts() -> list[dict[str, Any]]:
    return [rule for rule in rules() if "alert" in rule]


def as_documented(starts: str) -> subprocess.CompletedProcess[str]:
    parts.command("promtool")  # a skip, or under CI a failure, naming the package
    return typed(documented("docs/alerts.md", starts), env=clean_env(), cwd=ROOT)


def test_promtool_accepts_the_rules() -> None:
    checked = as_documented("promtool check rules")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(list(rules()))} rules found" in checked.stdout


def test_each_alert_fires_when_it_should_and_not_otherwise() -> None:
    tested = as_documented("promtool test rules")
    assert tested.returncode == 0, tested.stdout + tested.stderr
    unit_tests = "".join(path.read_text() for path in RULES.parent.glob("*.test.yml"))
    for alert in alerts():
        assert f"alertname: {alert['alert']}" in unit_tests, f"{alert['alert']} has no unit test"


def test_every_alert_has_a_severity_and_its_own_runbook_section() -> None:
    headings = re.findall(r"^## (\w+)$", RUNBOOKS.read_text(), re.MULTILINE)
    for alert in alerts():
        name = alert["alert"]
        assert alert["labels"]["severity"] in {"page", "ticket"}, name
        assert alert["annotations"]["runbook_url"] == f"{RUNBOOK_BASE}#{name.lower()}"
        assert name in headings, f"docs/runbooks.md has no section for {name}"
    assert sorted(headings) == sorted(alert["alert"] for alert in alerts())


def test_each_runbook_says_what_it_means_what_to_check_and_how_to_mitigate() -> None:
    sections = re.split(r"^## ", RUNBOOKS.read_text(), flags=re.MULTILINE)[1:]
    for section in sections:
        name = section.split("\n", 1)[0]
        assert "**What it means.**" in section, name
        checks = re.search(r"\*\*First checks\.\*\*\n1\. .*?\n2\. .*?\n3\. ", section, re.DOTALL)
        assert checks is not None, f"{name}: three first checks"
        assert "**Mitigation.**" in section, name


def test_the_slo_parameters_are_set_once_and_the_threshold_is_a_bucket_bound() -> None:
    text = RULES.read_text()
    thresholds = re.findall(r'le="([^"]+)"', text)
    assert len(thresholds) == 1, "the latency threshold is written in one place"
    assert float(thresholds[0]) in LATENCY_BUCKETS
    for objective in ("slo:availability:objective", "slo:latency:objective"):
        assert text.count(f"record: {objective}") == 1
        assert re.search(rf"record: {objective}\n\s+expr: vector\(0\.\d+\)", text)


def test_the_kubernetes_component_carries_the_same_rules() -> None:
    docs = render("overlays/production-monitoring")
    (rule,) = [doc for doc in docs if doc["kind"] == "PrometheusRule"]
    assert rule["spec"]["groups"] == groups()
    for doc in docs:
        if doc["kind"] not in OPERATOR_KINDS:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_the_scrape_settings_select_what_the_pods_serve() -> None:
    docs = render("overlays/production-monitoring")
    (monitor,) = [doc for doc in docs if doc["kind"] == "ServiceMonitor"]
    selected = [
        doc
        for doc in docs
        if doc["kind"] == "Service"
        and monitor["spec"]["selector"]["matchLabels"].items() <= doc["metadata"]["labels"].items()
    ]
    assert [service["metadata"]["name"] for service in selected] == [monitor["metadata"]["name"]]
    ports = {port["name"] for port in selected[0]["spec"]["ports"]}
    assert {endpoint["port"] for endpoint in monitor["spec"]["endpoints"]} <= ports
    assert all(endpoint["path"] == "/metrics" for endpoint in monitor["spec"]["endpoints"])
    pod_monitors = [doc for doc in docs if doc["kind"] == "PodMonitor"]
    deployments = {doc["metadata"]["name"]: doc for doc in docs if doc["kind"] == "Deployment"}
    for pod_monitor in pod_monitors:  # the job workers, where the service has them
        labels = pod_monitor["spec"]["selector"]["matchLabels"].items()
        (worker,) = [
            d
            for d in deployments.values()
            if labels <= d["spec"]["template"]["metadata"]["labels"].items()
        ]
        container_ports = {
            port["name"]
            for container in worker["spec"]["template"]["spec"]["containers"]
            for port in container.get("ports", [])
        }
        wanted = {endpoint["port"] for endpoint in pod_monitor["spec"]["podMetricsEndpoints"]}
        assert wanted <= container_ports
