"""Remembered tokens answer only while the full check would still accept them."""

from __future__ import annotations

from jwt import PyJWK

from app.auth.token_cache import VerifiedTokens
from app.auth.tokens import Principal, Verified
from devtools.oidc_provider import SigningKey

CALLER = Principal(subject="user-1", client_id="client-1", scopes=frozenset({"a:read"}))


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def public_key() -> PyJWK:
    return PyJWK(SigningKey.new("ES256").jwk())


def verified(key: PyJWK, *, expires_at: float, kid: str = "k1") -> Verified:
    return Verified(CALLER, kid, key, expires_at=expires_at)


def test_a_verified_token_is_remembered_until_exp_plus_the_leeway() -> None:
    clock, key = Clock(), public_key()
    cache = VerifiedTokens(10, leeway_seconds=30, clock=clock)
    cache.put("token", verified(key, expires_at=clock.now + 60))
    published = {"k1": key}.get
    assert cache.get("token", published) is CALLER
    clock.now += 60 + 29.9
    assert cache.get("token", published) is CALLER
    clock.now += 0.1  # the full check refuses from exp + leeway on
    assert cache.get("token", published) is None
    assert len(cache) == 0


def test_only_the_exact_token_string_is_a_hit() -> None:
    clock, key = Clock(), public_key()
    cache = VerifiedTokens(10, leeway_seconds=0, clock=clock)
    cache.put("header.payload.signature", verified(key, expires_at=clock.now + 60))
    assert cache.get("header.payload.forged", {"k1": key}.get) is None


def test_an_entry_dies_with_the_key_that_verified_it() -> None:
    clock, key = Clock(), public_key()
    cache = VerifiedTokens(10, leeway_seconds=0, clock=clock)
    cache.put("token", verified(key, expires_at=clock.now + 60))
    nothing: dict[str, PyJWK] = {}
    assert cache.get("token", nothing.get) is None  # rotated out
    cache.put("token", verified(key, expires_at=clock.now + 60))
    # The same key id published again as another key object (a new fetch): checked in full.
    assert cache.get("token", {"k1": public_key()}.get) is None


def test_a_full_cache_drops_its_oldest_entry_and_size_zero_keeps_none() -> None:
    clock, key = Clock(), public_key()
    published = {"k1": key}.get
    cache = VerifiedTokens(2, leeway_seconds=0, clock=clock)
    for token in ("first", "second", "third"):
        cache.put(token, verified(key, expires_at=clock.now + 60))
    assert len(cache) == 2
    assert cache.get("first", published) is None
    assert cache.get("third", published) is CALLER
    off = VerifiedTokens(0, leeway_seconds=0, clock=clock)
    off.put("token", verified(key, expires_at=clock.now + 60))
    assert off.get("token", published) is None


def test_hits_and_misses_are_counted_from_zero() -> None:
    clock, key = Clock(), public_key()
    cache = VerifiedTokens(8, leeway_seconds=0, clock=clock)
    assert (cache.hits, cache.misses) == (0, 0)
    published = {"k1": key}.get
    assert cache.get("a.b.c", published) is None
    cache.put("a.b.c", verified(key, expires_at=clock.now + 60))
    assert cache.get("a.b.c", published) is CALLER
    assert cache.get("a.b.c", published) is CALLER
    assert (cache.hits, cache.misses) == (2, 1)
