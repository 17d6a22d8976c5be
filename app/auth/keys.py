"""The OpenID provider's signing keys (its JWKS), fetched without blocking the event loop.

Fetched at startup and refreshed in the background; a token signed with a key not seen yet
triggers one refetch, at most once per `refetch_after` seconds, so a flood of random key ids
cannot hammer the provider. When the provider is down the last good key set stays in use.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable

import httpx
import structlog
from jwt import InvalidKeyError, PyJWK, PyJWKError

log = structlog.get_logger("app.auth")

DISCOVERY_PATH = "/.well-known/openid-configuration"


class ProviderKeys:
    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        issuer: str,
        jwks_url: str | None,
        algorithms: frozenset[str],
        refetch_after: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._issuer = issuer.rstrip("/")
        self._jwks_url = jwks_url
        self._algorithms = algorithms
        self._refetch_after = refetch_after
        self._clock = clock
        self._keys: dict[str, PyJWK] = {}
        self._fetched_at = -math.inf
        self._fetching = asyncio.Lock()

    @property
    def known(self) -> bool:
        """Whether any key is known: until then protected requests get 503, not 401."""
        return bool(self._keys)

    def published(self, kid: str) -> PyJWK | None:
        """The key known under this id now, without fetching."""
        return self._keys.get(kid)

    async def key(self, kid: str) -> PyJWK | None:
        """The key with this id; an unknown one is looked for once more, rate-limited."""
        found = self._keys.get(kid)
        if found is None and self._clock() - self._fetched_at >= self._refetch_after:
            await self.refresh()
            found = self._keys.get(kid)
        return found

    async def refresh(self) -> None:
        """Fetch the key set once (concurrent callers share it); keep the last good one when
        the provider fails."""
        async with self._fetching:
            if self._clock() - self._fetched_at < self._refetch_after and self._keys:
                return  # another caller fetched while this one waited
            self._fetched_at = self._clock()
            try:
                self._keys = await self._fetch()
            except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
                log.warning(
                    "jwks_fetch_failed",
                    error=type(exc).__name__,
                    detail=str(exc),  # what the provider did wrong; no secret is in it
                    kept=len(self._keys),
                )
                return
            log.info("jwks_fetched", keys=sorted(self._keys))

    async def keep_fresh(self, every: float, retry: float) -> None:
        """Background task: refresh every `every` seconds, every `retry` while none is known."""
        while True:
            await self.refresh()
            await asyncio.sleep(every if self._keys else retry)

    async def _fetch(self) -> dict[str, PyJWK]:
        url = self._jwks_url or await self._discover()
        response = await self._client.get(url)
        response.raise_for_status()
        keys: dict[str, PyJWK] = {}
        for jwk in response.json()["keys"]:
            if "kid" not in jwk or jwk.get("use", "sig") != "sig":
                continue
            if "alg" in jwk and jwk["alg"] not in self._algorithms:
                continue
            try:
                keys[jwk["kid"]] = PyJWK(jwk)
            except (PyJWKError, InvalidKeyError):
                continue  # a key type or curve this service does not accept
        if not keys:
            raise ValueError("no usable signing key in the JWKS")
        return keys

    async def _discover(self) -> str:
        response = await self._client.get(self._issuer + DISCOVERY_PATH)
        response.raise_for_status()
        document = response.json()
        # OpenID Connect Discovery 4.3: the document must name the issuer it was asked for.
        if str(document["issuer"]).rstrip("/") != self._issuer:
            raise ValueError("the discovery document names another issuer")
        return str(document["jwks_uri"])
