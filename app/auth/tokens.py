"""Access-token validation: a JWT signed by the provider, for this service, still valid.

The algorithm comes from the allow-list, never from the token alone (RFC 8725 3.1): a token
whose header names another algorithm (`none`, or HS256 signed with the public key) is refused
before any key is looked at. Then the signature with the provider's key of that `kid`, and
`iss`, `aud`, `exp`, `nbf`, `iat` with a small leeway. RFC 9068's `typ` `at+jwt` is accepted.
"""

from __future__ import annotations

from dataclasses import dataclass

import jwt
from jwt import PyJWK

from app.auth.keys import ProviderKeys

ACCEPTED_TYPES = frozenset({"jwt", "at+jwt", "application/at+jwt"})


class InvalidToken(Exception):
    """Why a token was refused: logged, never sent (the client gets RFC 6750's code only)."""


class KeysUnavailable(Exception):
    """No key of the provider is known yet: the service cannot check any token."""


@dataclass(frozen=True, slots=True)
class Principal:
    subject: str
    client_id: str | None
    scopes: frozenset[str]


@dataclass(frozen=True, slots=True)
class Verified:
    """A token that passed every check: who it names, the key that signed it, when it expires."""

    principal: Principal
    kid: str
    key: PyJWK
    expires_at: float


@dataclass(frozen=True, slots=True)
class TokenRules:
    issuer: str
    audience: str
    algorithms: frozenset[str]
    leeway_seconds: int


async def verify(token: str, keys: ProviderKeys, rules: TokenRules) -> Verified:
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise InvalidToken("malformed") from None
    algorithm, kid = header.get("alg"), header.get("kid")
    if algorithm not in rules.algorithms:
        raise InvalidToken(f"algorithm {algorithm!r} not allowed")
    typ = header.get("typ")  # optional: JWT when absent
    if typ is not None and str(typ).lower() not in ACCEPTED_TYPES:
        raise InvalidToken("not an access token (typ)")
    if not isinstance(kid, str):
        raise InvalidToken("no key id")
    key = await keys.key(kid)
    if key is None:
        if not keys.known:
            raise KeysUnavailable
        raise InvalidToken("unknown key id")
    try:
        claims = jwt.decode(
            token,
            key=key.key,
            algorithms=[algorithm],
            audience=rules.audience,
            issuer=rules.issuer,
            leeway=rules.leeway_seconds,
            options={"require": ["exp", "iat", "iss", "aud", "sub"]},
        )
    except jwt.PyJWTError as exc:
        raise InvalidToken(type(exc).__name__) from None
    except TypeError:
        # An allowed algorithm with a key of another type (ES256 naming an RSA key's kid):
        # PyJWT raises TypeError there, not one of its own errors.
        raise InvalidToken("the algorithm does not fit the key") from None
    principal = Principal(
        subject=str(claims["sub"]),
        client_id=claims.get("client_id") or claims.get("azp"),
        scopes=_scopes(claims),
    )
    return Verified(principal, kid, key, expires_at=float(claims["exp"]))


def _scopes(claims: dict[str, object]) -> frozenset[str]:
    """`scope` (space-separated, RFC 9068) or `scp` (a list, as some providers send)."""
    found = claims.get("scope") or claims.get("scp")
    if isinstance(found, str):
        return frozenset(found.split())
    if isinstance(found, list):
        return frozenset(str(scope) for scope in found)
    return frozenset()
