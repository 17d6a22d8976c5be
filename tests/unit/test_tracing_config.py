"""Tracing's configuration: OpenTelemetry's standard variables, validated with the others."""

from __future__ import annotations

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.sampling import Decision
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, TraceFlags

from app.settings import SettingsError, load_settings
from app.tracing import IncomingContext, build_propagator, build_sampler

OTEL_NAMES = (
    "OTEL_SDK_DISABLED",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_SERVICE_NAME",
    "OTEL_RESOURCE_ATTRIBUTES",
    "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG",
    "OTEL_PROPAGATORS",
)


@pytest.fixture(autouse=True)
def _no_otel_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in OTEL_NAMES:
        monkeypatch.delenv(name, raising=False)


def test_tracing_is_off_unless_an_endpoint_is_set() -> None:
    assert load_settings(_env_file=None).traces_endpoint is None


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
    ],
)
def test_the_endpoint_follows_the_standard_variables(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], endpoint: str | None
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert load_settings(_env_file=None).traces_endpoint == endpoint


def test_resource_attributes_are_parsed_and_percent_decoded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A value may hold "=" (base64 padding): the first one ends the key.
    attributes = "deployment.environment=prod, team=a%20b%2Cc, build=YWJj=="
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", attributes)
    settings = load_settings(_env_file=None)
    assert settings.otel_resource_attributes == {
        "deployment.environment": "prod",
        "team": "a b,c",
        "build": "YWJj==",
    }


def test_invalid_values_fail_with_the_other_settings_by_their_standard_names(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bad = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4318",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
        "OTEL_RESOURCE_ATTRIBUTES": "no-equals-sign",
        "OTEL_TRACES_SAMPLER": "sometimes",
        "OTEL_TRACES_SAMPLER_ARG": "1.5",
        "OTEL_PROPAGATORS": "tracecontext,b3",
        "OTEL_SDK_DISABLED": "maybe",
        "PORT": "http",
    }
    for name, value in bad.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as caught:
        load_settings(_env_file=None)
    assert sorted(line.split(":", 1)[0] for line in caught.value.problems) == sorted(bad)
    assert "no-equals-sign" not in str(caught.value)  # values are never echoed
    [attributes] = [p for p in caught.value.problems if p.startswith("OTEL_RESOURCE_ATTRIBUTES")]
    assert attributes.endswith("must be comma-separated key=value pairs")


def sampled_parent(sampled: bool) -> trace.Span:
    flags = TraceFlags(TraceFlags.SAMPLED if sampled else TraceFlags.DEFAULT)
    return NonRecordingSpan(SpanContext(1, 2, is_remote=True, trace_flags=flags))


def decide(sampler_name: str, kind: SpanKind, parent: trace.Span | None, ratio: float) -> bool:
    settings = load_settings(
        _env_file=None, otel_traces_sampler=sampler_name, otel_traces_sampler_arg=ratio
    )
    context = trace.set_span_in_context(parent) if parent is not None else None
    result = build_sampler(settings).should_sample(context, 7, "span", kind)
    return result.decision is Decision.RECORD_AND_SAMPLE


def test_the_default_sampler_follows_the_caller_and_samples_new_traces_by_ratio() -> None:
    default = load_settings(_env_file=None).otel_traces_sampler
    assert decide(default, SpanKind.SERVER, sampled_parent(True), ratio=0.0)
    assert not decide(default, SpanKind.SERVER, sampled_parent(False), ratio=1.0)
    assert decide(default, SpanKind.SERVER, None, ratio=1.0)
    assert not decide(default, SpanKind.SERVER, None, ratio=0.0)


def test_a_database_call_outside_any_request_starts_no_trace() -> None:
    for sampler in ("always_on", "parentbased_always_on", "traceidratio"):
        assert not decide(sampler, SpanKind.CLIENT, None, ratio=1.0)
        assert decide(sampler, SpanKind.SERVER, None, ratio=1.0)
    assert decide("parentbased_always_on", SpanKind.CLIENT, sampled_parent(True), ratio=1.0)


TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.mark.parametrize(
    ("names", "continued"), [(["tracecontext", "baggage"], True), (["none"], False)]
)
def test_propagators_read_the_w3c_headers_or_nothing(names: list[str], continued: bool) -> None:
    headers = [(b"traceparent", TRACEPARENT.encode()), (b"baggage", b"tenant=acme")]
    context = IncomingContext(build_propagator(names))(headers)
    parent = trace.get_current_span(context).get_span_context()
    assert parent.is_valid is continued
    if continued:
        assert trace.format_trace_id(parent.trace_id) == TRACEPARENT.split("-")[1]
