"""Who is calling: the `requires(*scopes)` dependency and its RFC 6750 errors.

With `AUTH__MODE=oidc` every route that depends on it needs a valid bearer token holding the
scopes it names (FastAPI's `SecurityScopes`): 401 with `WWW-Authenticate: Bearer
error="invalid_token"` for a missing or bad token, 403 with `error="insufficient_scope"` and the
scopes needed. Why a token was refused is logged, never sent. With `AUTH__MODE=none` it lets
every request through. The caller's subject and client id join the request's log lines.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

import structlog
from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer, SecurityScopes
from structlog.contextvars import bind_contextvars

from app.auth.keys import ProviderKeys
from app.auth.token_cache import VerifiedTokens
from app.auth.tokens import InvalidToken, KeysUnavailable, Principal, TokenRules, verify
from app.errors import AppError, ServiceUnavailable

STATE_KEY = "authenticator"
_CALLER_KEY = "caller"
ANYONE = Principal(subject="anonymous", client_id=None, scopes=frozenset())

log = structlog.get_logger("app.auth")
bearer = HTTPBearer(auto_error=False, description="An access token from the OpenID provider.")


@dataclass(frozen=True, slots=True)
class Authenticator:
    keys: ProviderKeys
    rules: TokenRules
    verified: VerifiedTokens

    async def caller(self, token: str) -> Principal:
        """Who the token names; raises `InvalidToken` or `KeysUnavailable`."""
        known = self.verified.get(token, self.keys.published)
        if known is not None:
            return known
        checked = await verify(token, self.keys, self.rules)
        self.verified.put(token, checked)
        return checked.principal


class Unauthorized(AppError):
    status = 401
    slug = "unauthorized"

    def __init__(self, detail: str, challenge: str) -> None:
        super().__init__(detail, headers={"WWW-Authenticate": challenge})

    @classmethod
    def no_token(cls) -> Unauthorized:
        # RFC 6750 3.1: no error code when the request carried no token at all.
        return cls("A bearer token is required.", "Bearer")

    @classmethod
    def invalid_token(cls) -> Unauthorized:
        return cls("The bearer token is not valid.", 'Bearer error="invalid_token"')


class Forbidden(AppError):
    status = 403
    slug = "insufficient-scope"

    def __init__(self, scopes: list[str]) -> None:
        needed = " ".join(scopes)
        super().__init__(
            f"The token lacks a scope this needs: {needed}.",
            headers={"WWW-Authenticate": f'Bearer error="insufficient_scope", scope="{needed}"'},
        )


async def principal(
    security_scopes: SecurityScopes,
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Principal:
    authenticator: Authenticator | None = getattr(request.state, STATE_KEY)  # the lifespan's
    if authenticator is None:
        return ANYONE  # AUTH__MODE=none
    if credentials is None:
        raise Unauthorized.no_token()
    try:
        caller = await authenticator.caller(credentials.credentials)
    except KeysUnavailable:
        raise ServiceUnavailable("The identity provider's keys are not known yet.") from None
    except InvalidToken as exc:
        log.info("token_refused", reason=str(exc))
        raise Unauthorized.invalid_token() from None
    bind_contextvars(subject=caller.subject, client_id=caller.client_id)
    missing = sorted(set(security_scopes.scopes) - caller.scopes)
    if missing:
        log.info("token_lacks_scope", missing=missing)
        raise Forbidden(security_scopes.scopes)
    setattr(request.state, _CALLER_KEY, caller)
    return caller


def caller_of(request: Request) -> Principal:
    """Who the route's `requires(...)` let in; ANYONE where it lets everyone in (AUTH__MODE=none,
    or a public route). Route dependencies run before the route's own parameters."""
    found: Principal = getattr(request.state, _CALLER_KEY, ANYONE)
    return found


def requires(*scopes: str) -> Any:
    """`Annotated[Principal, requires("orders:read")]`, or in a route's `dependencies=[...]`."""
    return Security(principal, scopes=list(scopes))
