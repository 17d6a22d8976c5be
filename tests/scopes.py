"""Every route that needs scopes, and a token each must refuse: a write (POST, PUT, PATCH,
DELETE) refuses a token holding every read scope of the app and nothing else; a read refuses a
token holding every scope but its own. Taken from the app's routes (app/auth/policy.py), so a
domain added later is covered without a line here."""

from __future__ import annotations

import re
from dataclasses import dataclass

from fastapi import FastAPI
from fastapi.routing import APIRoute

from app.auth.policy import scopes_of

READS = frozenset({"GET", "HEAD"})


@dataclass(frozen=True)
class Refusal:
    method: str
    path: str  # path parameters filled in
    needs: frozenset[str]
    token_scopes: frozenset[str]

    @property
    def token_scope(self) -> str:
        return " ".join(sorted(self.token_scopes))


def refusals(app: FastAPI) -> list[Refusal]:
    guarded = [
        (method, route.path, scopes_of(route))
        for route in app.routes
        if isinstance(route, APIRoute) and scopes_of(route)
        for method in sorted(route.methods or ())
    ]
    every = frozenset().union(*(needs for _, _, needs in guarded))
    reads = frozenset().union(*(needs for method, _, needs in guarded if method in READS))
    return [
        Refusal(
            method,
            re.sub(r"\{[^}]+\}", "1", path),
            needs,
            (every - needs) if method in READS else reads,
        )
        for method, path, needs in guarded
    ]
