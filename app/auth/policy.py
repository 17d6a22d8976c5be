"""Every route decides who may call it: it needs scopes (`requires(...)`, app/auth/dependency.py)
or it is public on purpose (`openapi_extra=PUBLIC`: the probes, `/metrics`). The API documents
FastAPI serves itself (`/openapi.json`, `/docs`) are public too, when they are on.

`undecided(app)` names every route that did neither; a test over the whole app fails on any, so
a new route without a decision never reaches production unnoticed.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from app.auth.dependency import principal

# OpenAPI's own way to say an operation needs no credentials: an empty list of requirements.
PUBLIC: dict[str, Any] = {"security": []}


def _dependants(dependant: Dependant) -> Iterator[Dependant]:
    yield dependant
    for sub in dependant.dependencies:
        yield from _dependants(sub)


def scopes_of(route: APIRoute) -> frozenset[str]:
    """The scopes a caller needs for this route (empty: no `requires` names any)."""
    return frozenset(
        scope
        for dependant in _dependants(route.dependant)
        if dependant.call is principal
        for scope in dependant.own_oauth_scopes or ()
    )


def is_public(route: APIRoute) -> bool:
    return (route.openapi_extra or {}).get("security") == []


def undecided(app: FastAPI) -> list[str]:
    """Routes that neither name scopes nor are public on purpose, as "METHODS path"."""
    documents = {app.openapi_url, app.docs_url, app.redoc_url, app.swagger_ui_oauth2_redirect_url}
    documents.discard(None)  # a document turned off
    found = []
    for route in app.routes:
        if isinstance(route, APIRoute):
            if is_public(route) == bool(scopes_of(route)):  # neither, or both at once
                found.append(f"{','.join(sorted(route.methods or ()))} {route.path}")
            continue
        path = getattr(route, "path", "")  # a starlette route, a mount; a host has none
        if path not in documents:
            found.append(f"{type(route).__name__} {path}".rstrip())
    return found
