"""deploy/k8s rendered by a real kustomize, validated against the Kubernetes schemas, and held
to the policies the service depends on (probes, shutdown timing, Restricted pods, budgets)."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]  # ships no py.typed
import pytest
import yaml

from app import domains  # jobs-only
from app.settings import DatabaseSettings, JobsSettings  # jobs-only
from tests import parts
from tests.support import ROOT, SERVICE, clean_env

K8S = ROOT / "deploy" / "k8s"
TARGETS = ["base", "overlays/production", "overlays/production-pgbouncer"]
KUBERNETES_VERSION = "1.32.0"
MARGIN_S = 5
POSTGRES_CONNECTIONS = 97  # max_connections 100 - superuser_reserved_connections 3
SLUG = SERVICE["slug"]
MIGRATE_JOB = f"{SLUG}-migrate"


def render(target: str) -> list[dict[str, Any]]:
    kubectl = parts.command("kubectl")
    result = subprocess.run(
        [kubectl, "kustomize", str(K8S / target)], capture_output=True, text=True, check=True
    )
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def one(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (found,) = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    return found


def config(docs: list[dict[str, Any]]) -> dict[str, str]:
    (found,) = [
        d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith(SLUG)
    ]
    return dict(found["data"])


def gunicorn_config(env: dict[str, str]) -> dict[str, Any]:
    """`python gunicorn_conf.py` with the ConfigMap's environment: the values the pods get.
    The Secret's values and the mounted CA file are stand-ins (settings check the file exists)."""
    with tempfile.NamedTemporaryFile("w", suffix=".crt") as ca:
        return _gunicorn_config(env | {"DB__SSLROOTCERT": ca.name})


def _gunicorn_config(env: dict[str, str]) -> dict[str, Any]:
    full = clean_env(**env) | {"DATABASE_URL": "postgresql://u:p@db/x"}
    result = subprocess.run(
        [sys.executable, "gunicorn_conf.py"],
        cwd=ROOT,
        env=full,
        capture_output=True,
        text=True,
        check=True,
    )
    return dict(json.loads(result.stdout))


def pod_specs(docs: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (d["metadata"]["name"], d["spec"]["template"]["spec"])
        for d in docs
        if d["kind"] in {"Deployment", "Job"}
    ]


@pytest.mark.parametrize("target", TARGETS)
def test_manifests_are_valid_kubernetes(target: str) -> None:
    for doc in render(target):
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("target", TARGETS)
def test_every_pod_meets_the_restricted_standard_and_has_limits(target: str) -> None:
    docs = render(target)
    for name, spec in pod_specs(docs):
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True, name
        assert pod["seccompProfile"]["type"] == "RuntimeDefault", name
        assert spec.get("automountServiceAccountToken") is False, name
        assert not any("hostPath" in volume for volume in spec.get("volumes", [])), name
        for container in spec["containers"]:
            security = container["securityContext"]
            assert security["allowPrivilegeEscalation"] is False, name
            assert security["capabilities"]["drop"] == ["ALL"], name
            assert security["readOnlyRootFilesystem"] is True, name
            assert "/tmp" in {m["mountPath"] for m in container["volumeMounts"]}, name  # noqa: S108
            resources = container["resources"]
            assert {"cpu", "memory"} <= set(resources["requests"]), name
            assert "memory" in resources["limits"], name


def mebibytes(quantity: str) -> float:
    units = {"Mi": 1.0, "Gi": 1024.0}
    return float(quantity[:-2]) * units[quantity[-2:]]


def test_the_service_pods_probe_the_right_paths_and_shut_down_in_time() -> None:
    docs = render("overlays/production")
    spec = one(docs, "Deployment", SLUG)["spec"]["template"]["spec"]
    (app,) = spec["containers"]
    port = {p["name"]: p["containerPort"] for p in app["ports"]}["http"]
    (bind,) = gunicorn_config(config(docs))["bind"]
    assert int(bind.rsplit(":", 1)[1]) == port  # the container listens where the probes look
    assert app["startupProbe"]["httpGet"]["path"] == "/health"
    assert app["livenessProbe"]["httpGet"]["path"] == "/health"
    assert app["readinessProbe"]["httpGet"]["path"] == "/ready"
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert app[probe]["httpGet"]["port"] == "http"
    assert mebibytes(app["resources"]["limits"]["memory"]) >= 512

    pre_stop = app["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    graceful = gunicorn_config(config(docs))["graceful_timeout"]
    assert spec["terminationGracePeriodSeconds"] >= int(pre_stop[1]) + graceful + MARGIN_S


def test_worker_counts_and_pools_fit_the_database() -> None:
    docs = render("overlays/production")
    env = config(docs)
    hpa = one(docs, "HorizontalPodAutoscaler", SLUG)["spec"]
    effective = gunicorn_config(env)
    assert int(env["SERVER__REPLICAS"]) == hpa["maxReplicas"]
    per_worker = int(env["DB__POOL_SIZE"]) + int(env["DB__MAX_OVERFLOW"])
    needed = hpa["maxReplicas"] * effective["workers"] * per_worker
    # jobs-only
    workers = one(docs, "Deployment", f"{SLUG}-worker")["spec"]["replicas"]
    assert int(env["JOBS__REPLICAS"]) == workers
    needed += workers * (int(env["JOBS__CONCURRENCY"]) + 1)
    # /jobs-only
    assert needed <= POSTGRES_CONNECTIONS
    pdb = one(docs, "PodDisruptionBudget", SLUG)["spec"]
    assert pdb["minAvailable"] < hpa["minReplicas"]  # a drain can always evict one pod


def test_the_service_routes_to_web_pods_only() -> None:
    docs = render("overlays/production")
    selector = one(docs, "Service", SLUG)["spec"]["selector"]
    web = one(docs, "Deployment", SLUG)["spec"]["template"]["metadata"]["labels"]
    job = one(docs, "Job", MIGRATE_JOB)["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= web.items()
    assert not selector.items() <= job.items()
    (migrate,) = one(docs, "Job", MIGRATE_JOB)["spec"]["template"]["spec"]["containers"]
    assert migrate["command"] == ["alembic", "upgrade", "head"]


def test_pgbouncer_overlay_switches_the_engine_mode() -> None:
    docs = render("overlays/production-pgbouncer")
    assert config(docs)["DB__PGBOUNCER"] == "true"
    assert one(docs, "Service", "pgbouncer")["spec"]["ports"][0]["port"] == 6432


# jobs-only
def test_the_job_workers_probe_their_own_port_and_stop_after_their_grace() -> None:
    docs = render("overlays/production")
    spec = one(docs, "Deployment", f"{SLUG}-worker")["spec"]["template"]["spec"]
    (worker,) = spec["containers"]
    assert worker["command"] == ["python", "-m", "app.jobs"]
    env = config(docs)
    jobs = jobs_settings(env)
    command_timeout = float(env.get("DB__COMMAND_TIMEOUT", DatabaseSettings().command_timeout))
    port = {p["name"]: p["containerPort"] for p in worker["ports"]}["metrics"]
    assert port == jobs.port
    for probe in ("startupProbe", "livenessProbe"):
        assert worker[probe]["httpGet"] == {"path": "/health", "port": "metrics"}
    # Running jobs finish within the grace, the rest are put back, then the margin.
    needed = jobs.grace_seconds + command_timeout + MARGIN_S
    assert spec["terminationGracePeriodSeconds"] >= needed
    # The grace fits the longest job, so a rollout stops none midway.
    timeouts = [job.timeout_seconds or jobs.timeout_seconds for job in domains.JOBS]
    longest = max(timeouts, default=jobs.timeout_seconds)
    assert jobs.grace_seconds >= longest
    pdb = one(docs, "PodDisruptionBudget", f"{SLUG}-worker")["spec"]
    assert pdb["minAvailable"] < one(docs, "Deployment", f"{SLUG}-worker")["spec"]["replicas"]
    assert pdb["selector"]["matchLabels"].items() <= spec_labels(docs, f"{SLUG}-worker").items()


def test_behind_pgbouncer_the_job_worker_still_connects_directly() -> None:
    env = config(render("overlays/production-pgbouncer"))
    assert env["JOBS__DATABASE_URL_FILE"] == "/run/secrets/JOBS__DATABASE_URL"


def spec_labels(docs: list[dict[str, Any]], name: str) -> dict[str, str]:
    labels: dict[str, str] = one(docs, "Deployment", name)["spec"]["template"]["metadata"]["labels"]
    return labels


def jobs_settings(env: dict[str, str]) -> JobsSettings:
    """The worker's settings as the ConfigMap sets them (the rest: defaults)."""
    prefix = "JOBS__"
    return JobsSettings.model_validate(
        {
            key.removeprefix(prefix).lower(): value
            for key, value in env.items()
            if key.startswith(prefix) and not key.endswith("_FILE")
        }
    )


# /jobs-only
