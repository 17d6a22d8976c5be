"""Bearer tokens from a real OpenID provider (`tests/oidc.py`), checked in-process by the real
app in production mode: every classic attack refused, the provider's outages survived."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from app.settings import Settings
from devtools.oidc_provider import AUDIENCE, Provider, SigningKey, openid_provider
from devtools.pgcluster import PgCluster
from tests.routes import service_with_test_routes
from tests.scopes import READS, refusals
from tests.support import asgi_client, make_settings, needs_example


@pytest.fixture
def provider() -> Iterator[Provider]:
    with openid_provider() as found:
        yield found


def oidc_settings(
    cluster: PgCluster, provider: Provider, *, docs: bool = False, **auth: Any
) -> Settings:
    return make_settings(
        cluster,
        app_env="production",
        log={"format": "json"},
        http={"allowed_hosts": ["testserver"], "docs": docs},
        auth={
            "mode": "oidc",
            "issuer": provider.issuer,
            "audience": AUDIENCE,
            "ca_file": provider.ca_file,
        }
        | auth,
    )


@asynccontextmanager
async def service(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(service_with_test_routes(settings)) as client:
        yield client


async def keys_fetched(client: httpx.AsyncClient, token: str, within: float = 10.0) -> None:
    """Wait for the startup fetch of the provider's keys (it runs in the background)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if (await call(client, token)).status_code != 503:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"the provider's keys did not arrive within {within} s")


async def call(client: httpx.AsyncClient, token: str | None, method: str = "GET") -> httpx.Response:
    headers = {"authorization": f"Bearer {token}"} if token is not None else {}
    return await client.request(method, "/_test/private", headers=headers)


def scoped(provider: Provider, scope: str = "notes:read notes:write", **claims: Any) -> str:
    return provider.token(scope=scope, **claims)


async def test_a_valid_token_with_each_scope(migrated: PgCluster, provider: Provider) -> None:
    async with service(oidc_settings(migrated, provider)) as client:
        await keys_fetched(client, scoped(provider))
        read = await call(client, scoped(provider, "notes:read"))
        assert read.status_code == 200
        assert read.json() == {"subject": "user-1234", "client_id": "client-abc"}
        assert (await call(client, scoped(provider, "notes:write"), "POST")).status_code == 200
        # scp as a list, as some providers send it
        listed = provider.token(scope="", scp=["notes:read"])
        assert (await call(client, listed)).status_code == 200


async def test_a_missing_scope_is_403_naming_it(
    migrated: PgCluster, provider: Provider, capsys: pytest.CaptureFixture[str]
) -> None:
    async with service(oidc_settings(migrated, provider)) as client:
        await keys_fetched(client, scoped(provider))
        capsys.readouterr()
        refused = await call(client, scoped(provider, "notes:read"), "POST")
        logged = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
        [lacking] = [line for line in logged if line["event"] == "token_lacks_scope"]
        assert (lacking["level"], lacking["missing"]) == ("info", ["notes:write"])
        # The caller is named in the request's lines, the refused ones included.
        [access] = [line for line in logged if line["event"] == "request"]
        assert (access["subject"], access["client_id"]) == ("user-1234", "client-abc")
        assert refused.status_code == 403
        assert refused.headers["www-authenticate"] == (
            'Bearer error="insufficient_scope", scope="notes:write"'
        )
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["detail"] == "The token lacks a scope this needs: notes:write."


async def test_a_token_without_typ_and_a_client_named_in_azp_is_accepted(
    migrated: PgCluster, provider: Provider
) -> None:
    """`typ` is optional (JWT by default); some providers name the client in `azp` only."""
    async with service(oidc_settings(migrated, provider)) as client:
        await keys_fetched(client, scoped(provider))
        token = provider.token(scope="notes:read", headers={"typ": None}, client_id=None, azp="web")
        assert "typ" not in jwt.get_unverified_header(token)
        answered = await call(client, token)
        assert answered.status_code == 200, answered.text
        assert answered.json()["client_id"] == "web"


async def test_clock_skew_is_allowed_up_to_the_leeway_and_no_further(
    migrated: PgCluster, provider: Provider
) -> None:
    now = int(time.time())
    async with service(oidc_settings(migrated, provider, leeway_seconds=30)) as client:
        await keys_fetched(client, scoped(provider))
        lately = provider.token(scope="notes:read", iat=now - 100, nbf=now - 100, exp=now - 10)
        long_ago = provider.token(scope="notes:read", iat=now - 100, nbf=now - 100, exp=now - 40)
        assert (await call(client, lately)).status_code == 200
        assert (await call(client, long_ago)).status_code == 401


async def test_a_provider_certificate_no_trusted_ca_signed_gets_no_key_fetched(
    migrated: PgCluster, provider: Provider, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without AUTH__CA_FILE the system's CAs decide, and none of them signed the test
    provider's certificate: no key is fetched, protected routes answer 503."""
    untrusted = oidc_settings(migrated, provider, ca_file=None)
    async with service(untrusted) as client:
        deadline = time.monotonic() + 10
        while "jwks_fetch_failed" not in (logged := capsys.readouterr().err):
            assert time.monotonic() < deadline, "no failed fetch was logged"
            await asyncio.sleep(0.05)
        assert (await call(client, scoped(provider))).status_code == 503
    [failed] = [json.loads(line) for line in logged.splitlines() if "jwks_fetch_failed" in line]
    assert failed["error"] == "ConnectError"
    assert provider.hits == 0  # the TLS handshake failed before any request


async def test_a_key_set_url_given_is_used_without_discovery(
    migrated: PgCluster, provider: Provider
) -> None:
    provider.discovery_down = True
    async with service(oidc_settings(migrated, provider, jwks_url=provider.jwks_url)) as client:
        await keys_fetched(client, scoped(provider))
        assert (await call(client, scoped(provider))).status_code == 200


async def test_every_guarded_route_refuses_a_token_without_its_scopes(
    migrated: PgCluster, provider: Provider
) -> None:
    """Writes refuse a token with every read scope; reads a token with every other scope."""
    app = service_with_test_routes(oidc_settings(migrated, provider))
    async with asgi_client(app) as client:
        await keys_fetched(client, scoped(provider))
        for refusal in refusals(app):
            bearer = {"authorization": f"Bearer {provider.token(scope=refusal.token_scope)}"}
            body: dict[str, str] | None = None if refusal.method in READS else {}
            answer = await client.request(refusal.method, refusal.path, json=body, headers=bearer)
            assert answer.status_code == 403, refusal
            assert 'error="insufficient_scope"' in answer.headers["www-authenticate"], refusal


async def cache_outcomes(client: httpx.AsyncClient) -> dict[str, float]:
    text = (await client.get("/metrics")).text
    found = re.findall(r'^auth_token_cache_total\{outcome="(\w+)"\} (\S+)$', text, re.M)
    return {outcome: float(value) for outcome, value in found}


async def outcomes_when(
    client: httpx.AsyncClient, ready: Callable[[dict[str, float]], bool]
) -> dict[str, float]:
    """The cache's outcomes on /metrics once `ready` holds (workers publish once a second)."""
    deadline = time.monotonic() + 5
    while not ready(found := await cache_outcomes(client)):
        assert time.monotonic() < deadline, found
        await asyncio.sleep(0.05)
    return found


async def test_a_token_used_again_is_a_cache_hit_and_a_refused_one_never_is(
    migrated: PgCluster, provider: Provider
) -> None:
    async with service(oidc_settings(migrated, provider)) as client:
        await keys_fetched(client, scoped(provider))  # misses only: each token checked once
        token = provider.token(scope="notes:read")  # a real token: three parts, two dots
        assert [(await call(client, token)).status_code for _ in range(3)] == [200] * 3
        first = await outcomes_when(client, lambda found: found.get("hit", 0) >= 2)
        assert first["hit"] == 2  # the second and third requests of the token

        forged = provider.token(scope="notes:read", aud="api://another-service")
        assert [(await call(client, forged)).status_code for _ in range(3)] == [401, 401, 401]
        later = await outcomes_when(client, lambda found: found["miss"] >= first["miss"] + 3)
        assert later == {"hit": 2, "miss": first["miss"] + 3}  # refused: never remembered


def forge(algorithm: str, kid: str, claims: dict[str, Any], *, signature: bytes) -> str:
    """A token put together by hand, with whatever header and signature an attacker likes."""

    def part(value: bytes) -> bytes:
        return base64.urlsafe_b64encode(value).rstrip(b"=")

    header = json.dumps({"alg": algorithm, "typ": "JWT", "kid": kid}).encode()
    return b".".join([part(header), part(json.dumps(claims).encode()), part(signature)]).decode()


def hs256(claims: dict[str, Any], kid: str, *, secret: bytes) -> str:
    """Signed by hand: PyJWT itself refuses to use a public key as an HMAC secret."""
    header = json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode()
    signing_input = b".".join(
        base64.urlsafe_b64encode(value).rstrip(b"=")
        for value in (header, json.dumps(claims).encode())
    )
    signature = hmac.new(secret, signing_input, hashlib.sha256).digest()
    return forge("HS256", kid, claims, signature=signature)


def forged(provider: Provider) -> dict[str, tuple[str | None, str | None]]:
    """Every token that must be refused, by what is wrong with it: the token, and the reason
    the service logs for it (None: no token, nothing to log)."""
    key = provider.keys[0]
    # Signed right with a published key, but in an algorithm AUTH__ALGORITHMS does not allow
    # (PyJWT itself would accept it): only the service's allow-list refuses it.
    rs512 = provider.rotate("RS512")
    now = int(time.time())
    public_pem = key.private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    claims = {"iss": provider.issuer, "aud": AUDIENCE, "sub": "x", "iat": now, "exp": now + 60}
    unsigned = jwt.encode(
        claims,
        None,  # type: ignore[arg-type]  # "none" takes no key, which the stubs do not allow
        algorithm="none",
        headers={"kid": key.kid},
    )
    return {
        "missing": (None, None),
        "wrong audience": (provider.token(aud="api://another-service"), "InvalidAudienceError"),
        "wrong issuer": (provider.token(iss="https://evil.example.com"), "InvalidIssuerError"),
        "expired": (
            provider.token(iat=now - 600, nbf=now - 600, exp=now - 300),
            "ExpiredSignatureError",
        ),
        "not yet valid": (provider.token(nbf=now + 300), "ImmatureSignatureError"),
        "key not in the JWKS": (provider.token(key=SigningKey.new()), "unknown key id"),
        "alg none": (unsigned, "algorithm 'none' not allowed"),
        "an allowed key in an algorithm not allowed": (
            provider.token(key=rs512),
            "algorithm 'RS512' not allowed",
        ),
        "HS256 signed with the public key": (
            hs256(claims, key.kid, secret=public_pem),
            "algorithm 'HS256' not allowed",
        ),
        "garbage": ("not.a.token", "malformed"),
        "no key id": (jwt.encode(claims, key.private, algorithm="RS256"), "no key id"),
        "ES256 naming an RSA key": (
            forge("ES256", key.kid, claims, signature=b"\x00" * 64),
            "the algorithm does not fit the key",
        ),
        "no exp": (provider.token(exp=None), "MissingRequiredClaimError"),
        "an ID token's typ": (
            provider.token(headers={"typ": "JWT+id"}),
            "not an access token (typ)",
        ),
    }


async def test_every_forged_or_invalid_token_is_401_without_saying_why(
    migrated: PgCluster, provider: Provider, capsys: pytest.CaptureFixture[str]
) -> None:
    tokens = forged(provider)  # before the service starts: its key set has the RS512 key
    async with service(oidc_settings(migrated, provider)) as client:
        await keys_fetched(client, scoped(provider))
        capsys.readouterr()
        for case, (token, reason) in tokens.items():
            refused = await call(client, token)
            assert refused.status_code == 401, case
            expected = 'Bearer error="invalid_token"' if token else "Bearer"
            assert refused.headers["www-authenticate"] == expected, case
            assert refused.json()["detail"] in (
                "The bearer token is not valid.",
                "A bearer token is required.",
            )
            logged = capsys.readouterr().err
            lines = [json.loads(line) for line in logged.splitlines() if line.startswith("{")]
            refusals = [line for line in lines if line["event"] == "token_refused"]
            # Why, at info, in the log alone; never the token.
            assert [line["reason"] for line in refusals] == ([reason] if reason else []), case
            assert token is None or token not in logged, case


async def test_a_rotated_in_key_works_without_restart(
    migrated: PgCluster, provider: Provider
) -> None:
    refetch = 1.0
    async with service(oidc_settings(migrated, provider, jwks_refetch_seconds=refetch)) as client:
        await keys_fetched(client, scoped(provider))
        await asyncio.sleep(refetch)  # refetches are rate-limited from the last fetch
        new = provider.rotate("ES256")
        answered = await call(client, provider.token(key=new, scope="notes:read"))
        assert answered.status_code == 200


async def test_a_remembered_token_still_expires(migrated: PgCluster, provider: Provider) -> None:
    async with service(oidc_settings(migrated, provider, leeway_seconds=0)) as client:
        await keys_fetched(client, scoped(provider))
        token = provider.token(scope="notes:read", lifetime=2)
        expires_at = jwt.decode(token, options={"verify_signature": False})["exp"]
        assert (await call(client, token)).status_code == 200
        assert (await call(client, token)).status_code == 200  # from the cache
        await asyncio.sleep(max(0.0, expires_at - time.time()) + 0.1)
        assert (await call(client, token)).status_code == 401


async def test_a_remembered_token_is_refused_once_its_key_is_withdrawn(
    migrated: PgCluster, provider: Provider
) -> None:
    refetch = 1.0
    settings = oidc_settings(migrated, provider, jwks_refetch_seconds=refetch)
    async with service(settings) as client:
        await keys_fetched(client, scoped(provider))
        old = provider.token(scope="notes:read", lifetime=3600)
        assert (await call(client, old)).status_code == 200
        await asyncio.sleep(refetch)
        provider.keys = [SigningKey.new()]  # the old key compromised and withdrawn
        # A token signed with the new key makes the service fetch the key set again.
        assert (await call(client, provider.token(scope="notes:read"))).status_code == 200
        assert (await call(client, old)).status_code == 401


async def test_the_provider_down_with_known_keys_and_a_flood_of_unknown_ones(
    migrated: PgCluster, provider: Provider
) -> None:
    async with service(oidc_settings(migrated, provider)) as client:
        await keys_fetched(client, scoped(provider))
        provider.down = True
        hits = provider.hits
        assert (await call(client, scoped(provider))).status_code == 200
        for _ in range(20):
            stranger = provider.token(key=SigningKey.new(), headers={"kid": uuid.uuid4().hex})
            assert (await call(client, stranger)).status_code == 401
        assert provider.hits - hits <= 2  # one refetch (discovery + JWKS), not twenty
        assert (await call(client, scoped(provider))).status_code == 200


async def test_the_provider_down_at_startup_is_503_then_recovery(
    migrated: PgCluster, provider: Provider
) -> None:
    provider.down = True
    async with service(oidc_settings(migrated, provider)) as client:
        waiting = await call(client, scoped(provider))
        assert waiting.status_code == 503
        assert waiting.json()["detail"] == "The identity provider's keys are not known yet."
        assert (await client.get("/ready")).status_code == 200  # not the provider's business
        provider.down = False
        await keys_fetched(client, scoped(provider), within=10)
        assert (await call(client, scoped(provider))).status_code == 200


async def test_openapi_declares_the_bearer_scheme_on_protected_routes(
    migrated: PgCluster, provider: Provider
) -> None:
    async with service(oidc_settings(migrated, provider, docs=True)) as client:
        document = (await client.get("/openapi.json")).json()
    assert document["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    # OpenAPI 3.1 lets a bearer requirement name the scopes (roles) it needs.
    assert document["paths"]["/_test/private"]["get"]["security"] == [
        {"HTTPBearer": ["notes:read"]}
    ]
    assert {"401", "403"} <= set(document["paths"]["/_test/private"]["get"]["responses"])
    # Public on purpose, in OpenAPI's words: an empty list of security requirements.
    assert document["paths"]["/health"]["get"]["security"] == []


async def test_no_authentication_in_production_is_a_warning_at_every_start(
    migrated: PgCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = make_settings(
        migrated,
        app_env="production",
        log={"format": "json"},
        http={"allowed_hosts": ["testserver"]},
        auth={"mode": "none"},
    )
    for _ in range(2):
        async with service(settings) as client:
            assert (await call(client, None)).status_code == 200  # anyone may call
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    warned = [line for line in lines if line.get("event") == "authentication_disabled"]
    assert [line["level"] for line in warned] == ["warning", "warning"]


@needs_example
async def test_the_example_needs_items_read_and_items_write(
    migrated: PgCluster, provider: Provider
) -> None:
    async with service(oidc_settings(migrated, provider)) as client:
        await keys_fetched(client, scoped(provider))
        reader = {"authorization": f"Bearer {provider.token(scope='items:read')}"}
        writer = {"authorization": f"Bearer {provider.token(scope='items:write')}"}
        assert (await client.get("/api/v1/items", headers=reader)).status_code == 200
        assert (await client.get("/api/v1/items", headers=writer)).status_code == 403
        created = await client.post("/api/v1/items", json={"name": "auth-lamp"}, headers=writer)
        assert created.status_code == 201
        assert (
            await client.post("/api/v1/items", json={"name": "x"}, headers=reader)
        ).status_code == 403
        assert (await client.get("/api/v1/items")).status_code == 401
