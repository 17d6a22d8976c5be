"""Schemathesis over the whole OpenAPI schema, in-process, with every default check.

Every operation gets schema-valid input (positive) and schema-violating input (negative): no
5xx, every response (errors included) conforms to what the schema declares, invalid input is
rejected with a 4xx, valid input is not. Driven through Hypothesis directly rather than
schemathesis' pytest plugin, whose fixture loader does not run on pytest 9.2 (`_nodeid`).

A failure can be replayed: Hypothesis's profile (tests/conftest.py) keeps the failing examples
in `.hypothesis/` on a developer's machine and, under CI, draws from a fixed seed and prints
the `@reproduce_failure` line that replays it.
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.routing import APIRoute
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from schemathesis import GenerationMode
from schemathesis.config import SchemathesisConfig
from schemathesis.core.result import Ok

from app.factory import create_app
from app.idempotency.dependency import HEADER
from app.settings import Settings

EXAMPLES_PER_OPERATION = 40


def _config(app: FastAPI) -> SchemathesisConfig:
    """Schemathesis' defaults, but valid data may meet a 422 where the operation takes an
    `Idempotency-Key`: the fuzzer reuses a key with another body, which is state, not data."""
    keyed = [
        f"{method.upper()} {path}"
        for path, operations in app.openapi()["paths"].items()
        for method, operation in operations.items()
        if any(parameter["name"] == HEADER for parameter in operation.get("parameters", []))
    ]
    accepted = ["2xx", "3xx", "401", "403", "404", "409", "422", "429", "5xx"]
    overrides = {"checks": {"positive_data_acceptance": {"expected-statuses": accepted}}}
    return SchemathesisConfig.from_dict(
        {"operations": [{"include-name": name, **overrides} for name in keyed]}
    )


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_every_operation_conforms_to_its_schema(settings: Settings, mode: GenerationMode) -> None:
    app = create_app(settings)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app, config=_config(app))
    operations = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result  # the schema itself must be valid
        operations.append(result.ok())
    labels = {operation.label for operation in operations}
    routes = {
        f"{method} {route.path}"
        for route in app.routes
        if isinstance(route, APIRoute) and route.include_in_schema
        for method in route.methods or ()
    }
    assert {"GET /health", "GET /ready"} <= routes  # and every domain's operations
    assert routes == labels

    for operation in operations:
        has_input = any(True for _ in operation.iter_parameters()) or bool(list(operation.body))
        if mode is GenerationMode.NEGATIVE and not has_input:
            # Nothing to make invalid: Hypothesis would report Unsatisfiable.
            assert operation.label in {"GET /health", "GET /ready"}
            continue

        @given(case=operation.as_strategy(generation_mode=mode))
        @hypothesis_settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        )
        def check(case: schemathesis.Case[Any]) -> None:
            case.call_and_validate()

        check()
