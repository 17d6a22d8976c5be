"""Tracing's configuration: OpenTelemetry's own variables, read by the SDK and checked first."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from opentelemetry.sdk.resources import SERVICE_INSTANCE_ID, SERVICE_NAME
from opentelemetry.util.re import parse_env_headers

from app.otel_variables import HEADER, otel_problems, traces_endpoint
from app.settings import SERVICE_SLUG, SettingsError, load_settings
from app.tracing import Tracing, start_tracing


def started(monkeypatch: pytest.MonkeyPatch, **env: str) -> Tracing:
    """Tracing as a worker starts it, with `env` in the process environment."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")  # nothing listens
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    tracing = start_tracing(os.environ)
    tracing.provider.shutdown()
    return tracing


def test_tracing_is_off_unless_an_endpoint_is_set() -> None:
    assert traces_endpoint({}) is None


@pytest.mark.parametrize(
    ("env", "endpoint"),
    [
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"},
            "http://collector:4318/v1/traces",
        ),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318/otlp/"}, "http://c:4318/otlp/v1/traces"),
        (
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318",
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "https://traces.example.com/in",
            },
            "https://traces.example.com/in",
        ),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": ""}, None),  # empty is unset (compose's ${VAR:-})
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "true"}, None),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_TRACES_EXPORTER": "none"}, None),
    ],
)
def test_the_endpoint_follows_the_standard_variables(
    env: dict[str, str], endpoint: str | None
) -> None:
    assert traces_endpoint(env) == endpoint


# Each variable with a value the SDK would ignore, misread or fail on once serving.
BAD = {
    "OTEL_SDK_DISABLED": "maybe",
    "OTEL_TRACES_EXPORTER": "console",
    "OTEL_RESOURCE_ATTRIBUTES": "team=a,no-equals-sign",
    "OTEL_EXPERIMENTAL_RESOURCE_DETECTORS": "gcp",
    "OTEL_TRACES_SAMPLER": "sometimes",
    "OTEL_TRACES_SAMPLER_ARG": "1.5",
    "OTEL_PROPAGATORS": "tracecontext,b3",
    "OTEL_BSP_SCHEDULE_DELAY": "5s",
    "OTEL_BSP_EXPORT_TIMEOUT": "0",
    "OTEL_BSP_MAX_QUEUE_SIZE": "-1",
    "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT": "many",
    "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT": "-1",
    "OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4318",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "ftp://collector/v1/traces",
    "OTEL_EXPORTER_OTLP_HEADERS": "x-api-key=SECRET-VALUE;x",
    "OTEL_EXPORTER_OTLP_TIMEOUT": "10000",
    "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": "ten",
    "OTEL_EXPORTER_OTLP_COMPRESSION": "zstd",
    "OTEL_EXPORTER_OTLP_CERTIFICATE": "/nonexistent/ca.pem",
    "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
    "OTEL_METRICS_EXPORTER": "otlp",
    "OTEL_PYTHON_ID_GENERATOR": "xray",
    "OTEL_TRACE_SAMPLER": "always_on",  # misspelt: the SDK would never read it
}


def test_every_bad_value_is_named_with_the_other_settings_and_never_echoed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in (BAD | {"PORT": "http"}).items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as caught:
        load_settings(_env_file=None)
    named = sorted(line.split(":", 1)[0] for line in caught.value.problems)
    assert named == sorted([*BAD, "PORT"])
    assert "SECRET-VALUE" not in str(caught.value)
    assert "no-equals-sign" not in str(caught.value)


GOOD = {
    "OTEL_SDK_DISABLED": "False",
    "OTEL_TRACES_EXPORTER": "otlp",
    "OTEL_SERVICE_NAME": "orders",
    "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=prod, team=a%20b, build=YWJj==",
    "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
    "OTEL_TRACES_SAMPLER_ARG": "0.25",
    "OTEL_PROPAGATORS": "tracecontext,baggage",
    "OTEL_BSP_SCHEDULE_DELAY": "1000",
    "OTEL_BSP_MAX_QUEUE_SIZE": "4096",
    "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "1024",
    "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT": "64",
    "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT": "unset",
    "OTEL_EXPORTER_OTLP_ENDPOINT": "https://collector.example.com:4318",
    "OTEL_EXPORTER_OTLP_HEADERS": "x-api-key=KEY%20ONE,authorization=Bearer abc",
    "OTEL_EXPORTER_OTLP_TIMEOUT": "2.5",
    "OTEL_EXPORTER_OTLP_COMPRESSION": "gzip",
    "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
    "OTEL_METRICS_EXPORTER": "none",
    "OTEL_LOGS_EXPORTER": "none",
}


def test_good_values_pass_and_empty_ones_are_unset(tmp_path: Path) -> None:
    certificate = tmp_path / "ca.pem"
    certificate.write_text("not checked here: read by the exporter")
    assert otel_problems(GOOD | {"OTEL_EXPORTER_OTLP_CERTIFICATE": str(certificate)}) == []
    assert otel_problems(dict.fromkeys(GOOD, "")) == []


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        (
            {"OTEL_TRACES_SAMPLER": "traceidratio"},
            "OTEL_TRACES_SAMPLER: needs OTEL_TRACES_SAMPLER_ARG as well",
        ),
        (
            {"OTEL_TRACES_SAMPLER": "always_on", "OTEL_TRACES_SAMPLER_ARG": "0.5"},
            "OTEL_TRACES_SAMPLER_ARG: is ignored",
        ),
        (
            {"OTEL_BSP_MAX_QUEUE_SIZE": "100", "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "512"},
            "OTEL_BSP_MAX_EXPORT_BATCH_SIZE: must not exceed OTEL_BSP_MAX_QUEUE_SIZE",
        ),
        ({"OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "4096"}, "must not exceed OTEL_BSP_MAX_QUEUE_SIZE"),
    ],
)
def test_variables_that_only_make_sense_together_are_checked_together(
    env: dict[str, str], problem: str
) -> None:
    [found] = otel_problems(env)
    assert found.startswith(problem) or problem in found


@pytest.mark.parametrize(
    "header",
    [
        *("a=b", "x-api-key=KEY%20x", "k=a/b:c", "k=", "Authorization=Bearer abc", "k = v "),
        *("a b c", "k=v;x", 'k="v"', "=v", "k=a\\b", "k\u00e9=v", "(k)=v"),
    ],
)
def test_the_header_check_agrees_with_the_exporters_parser(header: str) -> None:
    assert bool(HEADER.fullmatch(header.strip())) == bool(parse_env_headers(header, liberal=True))


def test_the_sampler_is_the_services_default_unless_the_variable_names_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    default = started(monkeypatch).provider.sampler.get_description()
    # A caller's decision is followed; a new trace is kept one time in ten.
    assert default.startswith("ParentBased{root:TraceIdRatioBased{0.1},")
    ratio = started(monkeypatch, OTEL_TRACES_SAMPLER_ARG="0.5").provider.sampler
    assert "TraceIdRatioBased{0.5}" in ratio.get_description()
    named = started(monkeypatch, OTEL_TRACES_SAMPLER="always_off").provider.sampler
    assert named.get_description() == "AlwaysOffSampler"


def test_the_service_name_is_the_slug_unless_a_variable_names_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def service_name(**env: str) -> object:
        return started(monkeypatch, **env).provider.resource.attributes[SERVICE_NAME]

    assert service_name() == SERVICE_SLUG
    assert service_name(OTEL_RESOURCE_ATTRIBUTES="service.name=from-attributes") == (
        "from-attributes"
    )
    assert service_name(OTEL_SERVICE_NAME="orders") == "orders"


def test_each_start_is_an_instance_of_its_own_whatever_the_attributes_say(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = {"OTEL_RESOURCE_ATTRIBUTES": "service.instance.id=fixed,team=payments"}
    first, second = (started(monkeypatch, **env).provider.resource for _ in range(2))
    assert first.attributes["team"] == "payments"
    assert first.attributes[SERVICE_INSTANCE_ID] != second.attributes[SERVICE_INSTANCE_ID]
    assert "fixed" not in (first.attributes[SERVICE_INSTANCE_ID], "")


CONTINUED = """
import os
from opentelemetry import trace
from app.tracing import start_tracing
tracing = start_tracing(os.environ)
headers = [(b"traceparent", b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")]
print(trace.get_current_span(tracing.incoming(headers)).get_span_context().is_valid)
tracing.provider.shutdown()
"""


@pytest.mark.parametrize(("propagators", "continued"), [("", "True"), ("none", "False")])
def test_the_sdk_reads_the_propagators_from_the_environment(
    propagators: str, continued: str
) -> None:
    """In a process of its own: the SDK reads OTEL_PROPAGATORS once, when first imported."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("OTEL_")}
    env |= {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9", "OTEL_PROPAGATORS": propagators}
    ran = subprocess.run(
        [sys.executable, "-c", CONTINUED], env=env, capture_output=True, text=True, check=True
    )
    assert ran.stdout.strip() == continued
