"""OpenTelemetry's own `OTEL_*` variables: the SDK reads them itself; this module checks them
first.

The SDK falls back quietly on a value it cannot use (a sampler ratio that is not a number
becomes 1.0, a malformed header is skipped, a misspelt name is never read), and fails with a
traceback on a few others once the worker is already serving. `otel_problems()` runs with the
other settings, before any port is bound, and names every such variable without its value
(headers carry API keys). What is honoured, and how, is in docs/tracing.md.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from importlib.metadata import entry_points
from pathlib import Path
from urllib.parse import urlsplit

from opentelemetry import environment_variables as api_variables
from opentelemetry.sdk import environment_variables as sdk_variables

Check = Callable[[str, Mapping[str, str]], str | None]

RATIO_SAMPLERS = frozenset({"traceidratio", "parentbased_traceidratio"})
SAMPLERS = RATIO_SAMPLERS | {
    "always_on",
    "always_off",
    "parentbased_always_on",
    "parentbased_always_off",
}
# This service's defaults where the SDK's differ: one new trace in ten, not every one.
DEFAULT_SAMPLER = "parentbased_traceidratio"
DEFAULT_RATIO = 0.1


def _set(environ: Mapping[str, str], name: str) -> str | None:
    # OpenTelemetry's rule: an empty variable is an unset one.
    return environ.get(name) or None


def comma_separated(value: str) -> list[str]:
    """The parts of a comma-separated OTEL_* value (pairs, names), trimmed, empty ones dropped."""
    return [part.strip() for part in value.split(",") if part.strip()]


def traces_endpoint(environ: Mapping[str, str]) -> str | None:
    """Where the exporter sends spans (its own rule), or None when tracing is off: no endpoint
    set, `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none`."""
    if (environ.get("OTEL_SDK_DISABLED") or "").strip().lower() == "true":
        return None
    if (environ.get("OTEL_TRACES_EXPORTER") or "").strip().lower() == "none":
        return None
    if traces := _set(environ, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        return traces
    if base := _set(environ, "OTEL_EXPORTER_OTLP_ENDPOINT"):
        return base.removesuffix("/") + "/v1/traces"
    return None


def _boolean(value: str, _: Mapping[str, str]) -> str | None:
    if value.strip().lower() in ("true", "false"):
        return None
    return "must be true or false (the SDK reads anything else as false)"


def _url(value: str, _: Mapping[str, str]) -> str | None:
    parts = urlsplit(value.strip())
    if parts.scheme in ("http", "https") and parts.hostname:
        return None
    return "must be an http:// or https:// URL with a host"


def _integer(minimum: int, unit: str = "") -> Check:
    def check(value: str, _: Mapping[str, str]) -> str | None:
        try:
            number = int(value.strip())
        except ValueError:
            number = minimum - 1
        if number >= minimum:
            return None
        return f"must be a whole number of at least {minimum}{unit} (the SDK would use its default)"

    return check


_NON_NEGATIVE = _integer(0)
_POSITIVE = _integer(1)


def _limit(value: str, environ: Mapping[str, str]) -> str | None:
    if value.strip().lower() == "unset":
        return None
    return _NON_NEGATIVE(value, environ)


def _batch_size(value: str, environ: Mapping[str, str]) -> str | None:
    if problem := _POSITIVE(value, environ):
        return problem
    queue = environ.get("OTEL_BSP_MAX_QUEUE_SIZE", "2048").strip()
    if queue.isdigit() and int(value) > int(queue):
        return "must not exceed OTEL_BSP_MAX_QUEUE_SIZE (2048 when unset)"
    return None


def _timeout_seconds(value: str, _: Mapping[str, str]) -> str | None:
    try:
        seconds = float(value.strip())
    except ValueError:
        return "must be a number of seconds (the SDK would use 10)"
    if not math.isfinite(seconds) or seconds <= 0:
        return "must be a number of seconds above 0"
    if seconds > 300:
        # The specification says milliseconds; this SDK reads seconds.
        return "is read in seconds by this SDK, not milliseconds: at most 300"
    return None


def _one_of(*allowed: str, why: str = "") -> Check:
    def check(value: str, _: Mapping[str, str]) -> str | None:
        if value.strip().lower() in allowed:
            return None
        return f"must be one of {', '.join(allowed)}{why}"

    return check


def _sampler(value: str, environ: Mapping[str, str]) -> str | None:
    name = value.strip().lower()
    if name not in SAMPLERS:
        return f"must be one of {', '.join(sorted(SAMPLERS))}"
    if name in RATIO_SAMPLERS and not _set(environ, "OTEL_TRACES_SAMPLER_ARG"):
        return "needs OTEL_TRACES_SAMPLER_ARG as well: without it the SDK keeps every trace"
    return None


def _ratio(value: str, environ: Mapping[str, str]) -> str | None:
    sampler = (_set(environ, "OTEL_TRACES_SAMPLER") or DEFAULT_SAMPLER).strip().lower()
    if sampler in SAMPLERS and sampler not in RATIO_SAMPLERS:
        return f"is ignored: OTEL_TRACES_SAMPLER={sampler} takes no ratio"
    try:
        ratio = float(value.strip())
    except ValueError:
        ratio = -1.0
    if 0 <= ratio <= 1:
        return None
    return "must be a number from 0 to 1 (the SDK would keep every trace)"


def _key_values(value: str, _: Mapping[str, str]) -> str | None:
    for pair in comma_separated(value):
        key, sep, _rest = pair.partition("=")
        if not sep or not key.strip():
            return "must be comma-separated key=value pairs (the SDK skips the others)"
    return None


# The exporter's grammar for one header (W3C baggage's, spaces allowed in values). Not its
# parser: that logs a header it rejects, value and all, and header values are secrets.
HEADER = re.compile(r"[!#-'*+\-.0-9A-Z^-z|~]+[ \t]*=[ \t]*[ !#-+\--:<-\[\]-~]*")


def _headers(value: str, _: Mapping[str, str]) -> str | None:
    for pair in comma_separated(value):
        if not HEADER.fullmatch(pair):
            return "must be comma-separated name=value pairs (the SDK skips the others)"
    return None


def _readable_file(value: str, _: Mapping[str, str]) -> str | None:
    path = Path(value.strip())
    if path.is_file():
        try:
            path.open("rb").close()
        except OSError:
            return "names a file that cannot be read"
        return None
    return "names no file (every export would fail)"


def _installed(group: str) -> Check:
    """Names of plug-ins the SDK finds by entry point (propagators, detectors)."""

    def check(value: str, _: Mapping[str, str]) -> str | None:
        names = comma_separated(value)
        if group == "opentelemetry_propagator" and "none" in (n.lower() for n in names):
            return None
        missing = [name for name in names if not entry_points(group=group, name=name)]
        if not missing:
            return None
        return f"names {', '.join(missing)}, not installed here (misspelt, or a missing package)"

    return check


def _exporter_variables() -> dict[str, Check]:
    """The OTLP/HTTP span exporter's variables, each also under its _TRACES_ name."""
    checks: dict[str, Check] = {
        "ENDPOINT": _url,
        "HEADERS": _headers,
        "TIMEOUT": _timeout_seconds,
        "COMPRESSION": _one_of("gzip", "deflate", "none"),
        "CERTIFICATE": _readable_file,
        "CLIENT_KEY": _readable_file,
        "CLIENT_CERTIFICATE": _readable_file,
        "PROTOCOL": _one_of("http/protobuf", why=" (the only exporter installed)"),
    }
    return {
        f"OTEL_EXPORTER_OTLP_{signal}{name}": check
        for name, check in checks.items()
        for signal in ("", "TRACES_")
    }


# Read by the provider's span limits: a count or a length, or "unset" for none.
SPAN_LIMITS = (
    "OTEL_ATTRIBUTE_COUNT_LIMIT",
    "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT",
    "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT",
    "OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT",
    "OTEL_SPAN_EVENT_COUNT_LIMIT",
    "OTEL_SPAN_LINK_COUNT_LIMIT",
    "OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT",
    "OTEL_LINK_ATTRIBUTE_COUNT_LIMIT",
)
# Every variable the service's tracing honours: read by the SDK classes it builds (provider,
# resource, batch processor, OTLP/HTTP exporter) or by app/tracing.py, each with its check.
HONOURED: dict[str, Check] = {
    "OTEL_SDK_DISABLED": _boolean,
    "OTEL_TRACES_EXPORTER": _one_of("otlp", "none", why=" (spans go over OTLP/HTTP only)"),
    "OTEL_SERVICE_NAME": lambda value, _: None,
    "OTEL_RESOURCE_ATTRIBUTES": _key_values,
    "OTEL_EXPERIMENTAL_RESOURCE_DETECTORS": _installed("opentelemetry_resource_detector"),
    "OTEL_TRACES_SAMPLER": _sampler,
    "OTEL_TRACES_SAMPLER_ARG": _ratio,
    "OTEL_PROPAGATORS": _installed("opentelemetry_propagator"),
    "OTEL_BSP_SCHEDULE_DELAY": _integer(1, " ms"),
    "OTEL_BSP_EXPORT_TIMEOUT": _integer(1, " ms"),
    "OTEL_BSP_MAX_QUEUE_SIZE": _POSITIVE,
    "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": _batch_size,
    **dict.fromkeys(SPAN_LIMITS, _limit),
    **_exporter_variables(),
    "OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED": _boolean,
}
# Harmless where a platform sets them for every workload: this service sends no metrics or
# logs over OTLP, and says so only if asked for something else.
NOT_SENT = {"OTEL_METRICS_EXPORTER", "OTEL_LOGS_EXPORTER"}


def _known_names() -> frozenset[str]:
    return frozenset(
        value
        for module in (api_variables, sdk_variables)
        for name, value in vars(module).items()
        if name.startswith("OTEL_") and isinstance(value, str)
    )


def otel_problems(environ: Mapping[str, str]) -> list[str]:
    """One line per `OTEL_*` variable the SDK would ignore or misread, naming it, never its
    value."""
    known = _known_names()
    problems = []
    for name in sorted(n for n in environ if n.startswith("OTEL_")):
        value = environ[name]
        if not value.strip() and (name in HONOURED or name in NOT_SENT):
            continue  # empty is unset
        if name in HONOURED:
            problem = HONOURED[name](value, environ)
        elif name in NOT_SENT:
            problem = _one_of("none", why=": this service sends only traces")(value, environ)
        elif name in known:
            problem = "is not honoured here: this service sends only traces, over OTLP/HTTP"
        else:
            problem = "is not an OpenTelemetry variable (misspelt?)"
        if problem:
            problems.append(f"{name}: {problem}")
    return problems
