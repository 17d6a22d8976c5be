"""The OpenAPI document tells the truth about errors: every operation may answer 400, 413, 500
and 504 from the middleware, DB-backed ones 503, and every 4xx/5xx body is a `Problem` in
`application/problem+json`. FastAPI only knows the responses a route declares, so this fills in
the rest (schemathesis checks each response against it)."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from app.errors import PROBLEM_JSON, FieldError, Problem

# Answered by the middleware for any operation.
_ALWAYS = (400, 413, 500, 504)
_PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}


def install_openapi(app: FastAPI, *, no_database: frozenset[str], secured: bool) -> None:
    """Replace `app.openapi` with a generator that documents the error responses, and the
    bearer scheme where it is enforced (`secured`, AUTH__MODE=oidc) and only there."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components.pop("HTTPValidationError", None)
        components.pop("ValidationError", None)
        for model in (Problem, FieldError):
            components[model.__name__] = model.model_json_schema(
                ref_template="#/components/schemas/{model}"
            )
        if not secured:
            schema["components"].pop("securitySchemes", None)
        for path, operations in schema.get("paths", {}).items():
            for operation in operations.values():
                responses: dict[str, Any] = operation.setdefault("responses", {})
                codes = [*_ALWAYS, *(() if path in no_database else (503,))]
                if "security" in operation:
                    if secured:
                        codes += [401, 403]
                    else:
                        del operation["security"]
                for code in codes:
                    responses.setdefault(str(code), {})
                for code, response in responses.items():
                    if int(code) >= 400:
                        response["description"] = response.get("description") or (
                            HTTPStatus(int(code)).phrase
                        )
                        response["content"] = {PROBLEM_JSON: {"schema": _PROBLEM_REF}}
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented override hook
