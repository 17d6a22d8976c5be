"""The provider's key set (app/auth/keys.py) against a real OpenID provider over https: what it
fetches, what it skips, what it keeps when the provider fails, and when it asks again (on a
clock the test moves)."""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from app.auth.keys import ProviderKeys
from app.logging import configure_logging
from app.settings import LogSettings
from devtools.oidc_provider import Provider, SigningKey, openid_provider

REFETCH_S = 30.0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def provider() -> Iterator[Provider]:
    with openid_provider() as found:
        yield found


@asynccontextmanager
async def provider_keys(
    provider: Provider, clock: Any = time.monotonic, **options: Any
) -> AsyncIterator[ProviderKeys]:
    trusted = ssl.create_default_context(cafile=provider.ca_file)
    async with httpx.AsyncClient(verify=trusted, timeout=5) as client:
        yield ProviderKeys(
            client,
            issuer=options.pop("issuer", provider.issuer),
            jwks_url=options.pop("jwks_url", None),
            algorithms=frozenset(options.pop("algorithms", ("RS256", "ES256"))),
            refetch_after=options.pop("refetch_after", REFETCH_S),
            clock=clock,
        )


async def test_the_first_lookup_fetches_the_keys_without_waiting_for_a_refresh(
    provider: Provider,
) -> None:
    async with provider_keys(provider, Clock()) as keys:
        known_before = keys.known
        assert await keys.key(provider.keys[0].kid) is not None
        assert (known_before, keys.known) == (False, True)
    assert provider.hits == 2  # the discovery document, then the key set


async def test_an_unknown_key_is_looked_for_again_only_once_the_wait_has_passed(
    provider: Provider,
) -> None:
    clock = Clock()
    known = provider.keys[0].kid
    async with provider_keys(provider, clock) as keys:
        await keys.refresh()
        fetched = provider.hits
        clock.now += REFETCH_S - 0.1
        assert await keys.key("unknown") is None
        assert provider.hits == fetched  # too soon: a flood of made-up ids costs nothing
        clock.now += 0.1  # exactly the wait
        assert await keys.key(known) is not None
        assert provider.hits == fetched  # a known key never fetches
        assert await keys.key("unknown") is None
        assert provider.hits == fetched + 2  # looked for once more


async def test_refreshes_close_together_share_one_fetch(provider: Provider) -> None:
    clock = Clock()
    async with provider_keys(provider, clock) as keys:
        await keys.refresh()
        await keys.refresh()
        assert provider.hits == 2
        clock.now += REFETCH_S
        await keys.refresh()
        assert provider.hits == 4


async def test_a_failed_fetch_keeps_the_last_keys_and_says_so(
    provider: Provider, capsys: pytest.CaptureFixture[str], worker_logs: None
) -> None:
    clock = Clock()
    kid = provider.keys[0].kid
    async with provider_keys(provider, clock) as keys:
        capsys.readouterr()
        await keys.refresh()
        provider.down = True
        clock.now += REFETCH_S
        await keys.refresh()
        assert await keys.key(kid) is not None  # still the last good set
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    logged = [line for line in lines if line.get("logger") == "app.auth"]
    assert [(e["event"], e["level"]) for e in logged] == [
        ("jwks_fetched", "info"),
        ("jwks_fetch_failed", "warning"),
    ]
    assert logged[0]["keys"] == [kid]
    assert (logged[1]["error"], logged[1]["kept"]) == ("HTTPStatusError", 1)
    assert "503 Service Unavailable" in logged[1]["detail"]


@pytest.fixture
def worker_logs() -> None:
    """JSON lines, as a worker writes them."""
    configure_logging(LogSettings(format="json"), production=True)


async def failure_after_one_refresh(provider: Provider, capsys: pytest.CaptureFixture[str]) -> str:
    async with provider_keys(provider, Clock()) as keys:
        capsys.readouterr()
        await keys.refresh()
        assert not keys.known
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    [failed] = [line for line in lines if line.get("event") == "jwks_fetch_failed"]
    return str(failed["detail"])


async def test_a_discovery_document_naming_another_issuer_is_not_believed(
    provider: Provider, capsys: pytest.CaptureFixture[str], worker_logs: None
) -> None:
    """OpenID Connect Discovery 4.3: the document must name the issuer it was asked for."""
    provider.discovery_issuer = "https://evil.example.com"
    detail = await failure_after_one_refresh(provider, capsys)
    assert detail == "the discovery document names another issuer"


async def test_a_key_set_without_a_usable_key_is_a_failed_fetch(
    provider: Provider, capsys: pytest.CaptureFixture[str], worker_logs: None
) -> None:
    provider.keys, provider.extra_jwks = [], [jwk(SigningKey.new(), use="enc")]
    assert await failure_after_one_refresh(provider, capsys) == "no usable signing key in the JWKS"


async def test_keeping_fresh_retries_quickly_until_keys_arrive_then_waits(
    provider: Provider,
) -> None:
    provider.down = True
    async with provider_keys(provider, refetch_after=0) as keys:
        fresh = asyncio.create_task(keys.keep_fresh(every=30, retry=0.05))
        try:
            # An attempt each 0.05 s (TLS handshakes make each slower on a busy machine); the
            # 30 s refresh would make one.
            async with asyncio.timeout(5):
                while provider.hits < 3:  # noqa: ASYNC110 - waits for the task under test
                    await asyncio.sleep(0.01)
            provider.down = False
            while not keys.known:  # noqa: ASYNC110 - waits for the task under test
                await asyncio.sleep(0.01)
            known_at = provider.hits
            await asyncio.sleep(0.3)  # keys known: the next refresh is 30 s away
            assert provider.hits == known_at
        finally:
            fresh.cancel()


def jwk(key: SigningKey, **changes: Any) -> dict[str, Any]:
    """The key's JWK with members changed (None: left out)."""
    found = key.jwk() | changes
    return {name: value for name, value in found.items() if value is not None}


async def test_keys_a_service_must_not_use_are_skipped_and_the_others_kept(
    provider: Provider,
) -> None:
    encryption, no_id, other_algorithm = SigningKey.new(), SigningKey.new(), SigningKey.new()
    no_algorithm, no_use, usual = SigningKey.new("ES256"), SigningKey.new(), SigningKey.new()
    provider.keys = []
    provider.extra_jwks = [  # the ones to skip first: one must not end the list
        {"kty": "EC", "crv": "P-999", "kid": "odd-curve", "x": "AA", "y": "AA"},
        jwk(encryption, use="enc"),
        jwk(no_id, kid=None),
        jwk(other_algorithm, alg="RS512"),
        jwk(no_algorithm, alg=None),
        jwk(no_use, use=None),
        jwk(usual),
    ]
    async with provider_keys(provider, Clock()) as keys:
        await keys.refresh()
        assert keys.published(encryption.kid) is None
        assert keys.published(other_algorithm.kid) is None
        for kept in (no_algorithm, no_use, usual):
            assert keys.published(kept.kid) is not None, kept


async def test_an_issuer_with_a_trailing_slash_finds_its_discovery_document(
    provider: Provider,
) -> None:
    provider.trailing_slash = True
    async with provider_keys(provider, Clock()) as keys:
        assert provider.issuer.endswith("/")
        assert await keys.key(provider.keys[0].kid) is not None


async def test_a_key_set_url_given_needs_no_discovery(provider: Provider) -> None:
    provider.discovery_down = True
    async with provider_keys(provider, Clock(), jwks_url=provider.jwks_url) as keys:
        assert await keys.key(provider.keys[0].kid) is not None
    async with provider_keys(provider, Clock()) as keys:
        assert await keys.key(provider.keys[0].kid) is None  # without it: nothing to go on
