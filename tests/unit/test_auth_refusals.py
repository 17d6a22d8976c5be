"""RFC 6750's refusals: what a client is told when its token is missing, bad or too weak."""

from __future__ import annotations

from app.auth.dependency import Forbidden, Unauthorized


def test_a_missing_token_is_challenged_without_an_error_code() -> None:
    missing = Unauthorized.no_token()
    assert (missing.status, missing.headers) == (401, {"WWW-Authenticate": "Bearer"})
    assert missing.detail == "A bearer token is required."
    bad = Unauthorized.invalid_token()
    assert bad.headers == {"WWW-Authenticate": 'Bearer error="invalid_token"'}
    assert bad.detail == "The bearer token is not valid."


def test_too_weak_a_token_is_told_every_scope_needed() -> None:
    refused = Forbidden(["orders:read", "orders:write"])
    assert refused.status == 403
    assert refused.detail == "The token lacks a scope this needs: orders:read orders:write."
    assert refused.headers == {
        "WWW-Authenticate": 'Bearer error="insufficient_scope", scope="orders:read orders:write"'
    }
