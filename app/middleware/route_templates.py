"""The route template of a request (`/api/v1/orders/{order_id}`): the metrics label and the
access log's `route`, bounded in number however many ids clients send.

Starlette puts the matched route in `scope["route"]`, but a route of a router added with
`app.include_router(router, prefix=...)` knows only its own path (`/{order_id}`): two domains'
routes would share a label. FastAPI's public `iter_route_contexts()` gives every route's
effective, prefixed path; the lifespan builds the table once, when the routes are final.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from fastapi.routing import iter_route_contexts
from starlette.routing import BaseRoute
from starlette.types import Scope

STATE_KEY = "route_templates"
# id() of a route object (routes define __eq__, so they are not hashable) -> its effective
# paths: more than one when a router is included twice. Routes live as long as the app.
RouteTemplates = dict[int, tuple[tuple[re.Pattern[str], str], ...]]


def route_templates(routes: Sequence[BaseRoute]) -> RouteTemplates:
    found: dict[int, list[tuple[re.Pattern[str], str]]] = {}
    for context in iter_route_contexts(routes):
        path, pattern = context.path, getattr(context, "path_regex", None)
        if path is not None and pattern is not None:
            found.setdefault(id(context.original_route), []).append((pattern, path))
    return {route: tuple(paths) for route, paths in found.items()}


def route_template(scope: Scope) -> str | None:
    """The template of the route that served the request; None when no route matched."""
    route = scope.get("route")
    if route is None:
        return None
    state = scope.get("state")
    table: RouteTemplates = state.get(STATE_KEY, {}) if isinstance(state, dict) else {}
    paths = table.get(id(route), ())
    if len(paths) == 1:
        return paths[0][1]
    for pattern, path in paths:  # the same router under several prefixes
        if pattern.match(scope["path"]):
            return path
    return getattr(route, "path", None)
