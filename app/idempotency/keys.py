"""The `Idempotency-Key` header and the request fingerprint (draft-ietf-httpapi-idempotency-
key-header): what identifies a retry, and what tells it apart from a new request under an old
key."""

from __future__ import annotations

import hashlib
import re

MAX_KEY_LENGTH = 255
# An sf-string (RFC 8941 3.3.3): printable ASCII in quotes, `\` escaping `"` and `\` only.
_SF_STRING = re.compile(r'"((?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\["\\])*)"')
# A bare token, accepted as well: what most clients send.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z:/]+")


class InvalidKey(ValueError):
    """The header is present but not a key this service accepts."""


def parse_key(header: str) -> str:
    """The key in an `Idempotency-Key` header value: a quoted sf-string or a bare token, 1 to
    255 characters."""
    value = header.strip()
    if quoted := _SF_STRING.fullmatch(value):
        key = re.sub(r"\\(.)", r"\1", quoted.group(1))
    elif _TOKEN.fullmatch(value):
        key = value
    else:
        raise InvalidKey("Idempotency-Key must be a quoted string or a token.")
    if not 1 <= len(key) <= MAX_KEY_LENGTH:
        raise InvalidKey(f"Idempotency-Key must have 1 to {MAX_KEY_LENGTH} characters.")
    return key


def fingerprint(method: str, path_and_query: str, body: bytes) -> bytes:
    """What makes two requests the same request: method, concrete path with its query, body."""
    digest = hashlib.sha256()
    for part in (method.upper().encode(), path_and_query.encode(), body):
        digest.update(len(part).to_bytes(8, "big"))  # lengths first: no two splits collide
        digest.update(part)
    return digest.digest()
