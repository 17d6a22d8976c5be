"""One worker's authentication: the provider's keys, an HTTP client for them, and the task
that keeps them fresh. Startup never waits for the provider: until its keys arrive, protected
routes answer 503 and the service recovers by itself."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import structlog

from app.auth.dependency import Authenticator
from app.auth.keys import ProviderKeys
from app.auth.token_cache import VerifiedTokens
from app.auth.tokens import TokenRules
from app.settings import AuthSettings, Settings

# Bounded: a slow provider must not hold a refresh (or a request waiting on one) for long.
PROVIDER_TIMEOUT = httpx.Timeout(3.0, connect=2.0)
REFRESH_EVERY_S = 600.0
RETRY_EVERY_S = 5.0  # while no key is known yet

log = structlog.get_logger("app.auth")


@asynccontextmanager
async def authentication(settings: Settings) -> AsyncIterator[Authenticator | None]:
    """This worker's `Authenticator`, or None with AUTH__MODE=none."""
    auth = settings.auth
    if settings.auth_mode == "none":
        if settings.is_production:
            log.warning("authentication_disabled", hint="AUTH__MODE=none in production")
        yield None
        return
    async with httpx.AsyncClient(timeout=PROVIDER_TIMEOUT, verify=_trusted(auth)) as client:
        authenticator = Authenticator(_keys(auth, client), _rules(auth), _verified(auth))
        refresher = asyncio.create_task(
            authenticator.keys.keep_fresh(REFRESH_EVERY_S, retry=RETRY_EVERY_S)
        )
        try:
            yield authenticator
        finally:
            refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await refresher


def _trusted(auth: AuthSettings) -> ssl.SSLContext:
    """Who may sign the provider's TLS certificate: AUTH__CA_FILE, or the system's CAs."""
    return ssl.create_default_context(cafile=auth.ca_file)


def _keys(auth: AuthSettings, client: httpx.AsyncClient) -> ProviderKeys:
    assert auth.issuer is not None  # noqa: S101 - the settings require it with oidc
    return ProviderKeys(
        client,
        issuer=auth.issuer,
        jwks_url=auth.jwks_url,
        algorithms=frozenset(auth.algorithms),
        refetch_after=auth.jwks_refetch_seconds,
    )


def _verified(auth: AuthSettings) -> VerifiedTokens:
    return VerifiedTokens(auth.token_cache_size, leeway_seconds=auth.leeway_seconds)


def _rules(auth: AuthSettings) -> TokenRules:
    assert auth.issuer is not None  # noqa: S101 - the settings require it with oidc
    assert auth.audience is not None  # noqa: S101 - the settings require it with oidc
    return TokenRules(
        issuer=auth.issuer,
        audience=auth.audience,
        algorithms=frozenset(auth.algorithms),
        leeway_seconds=auth.leeway_seconds,
    )
