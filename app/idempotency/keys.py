"""The `Idempotency-Key` header and the request fingerprint (draft-ietf-httpapi-idempotency-
key-header): what identifies a retry, and what tells it apart from a new request under an old
key."""

from __future__ import annotations

import hashlib
import re

MAX_KEY_LENGTH = 255
# An sf-string (RFC 8941 3.3.3): printable ASCII in quotes, `\` escaping `"` and `\` only; or a
# bare token, accepted as well (what most clients send). Either one holds 1 to 255 characters.
_SF_CHARACTER = r'(?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\["\\])'
_BARE_CHARACTER = r"[!#$%&'*+\-.^_`|~0-9A-Za-z:/]"
_LENGTH = f"{{1,{MAX_KEY_LENGTH}}}"
# Also the header's pattern in the OpenAPI document.
KEY_PATTERN = f'^(?:"{_SF_CHARACTER}{_LENGTH}"|{_BARE_CHARACTER}{_LENGTH})$'
_KEY = re.compile(KEY_PATTERN)


class InvalidKey(ValueError):
    """The header is present but not a key this service accepts."""


def parse_key(header: str) -> str:
    """The key in an `Idempotency-Key` header value."""
    value = header.strip()
    if not _KEY.fullmatch(value):
        raise InvalidKey(
            f"Idempotency-Key must be a quoted string or a token of 1 to {MAX_KEY_LENGTH} "
            "characters."
        )
    if value.startswith('"'):
        return re.sub(r"\\(.)", r"\1", value[1:-1])
    return value


def fingerprint(method: str, path_and_query: str, body: bytes) -> bytes:
    """What makes two requests the same request: method, concrete path with its query, body."""
    digest = hashlib.sha256()
    for part in (method.upper().encode(), path_and_query.encode(), body):
        digest.update(len(part).to_bytes(8, "big"))  # lengths first: no two splits collide
        digest.update(part)
    return digest.digest()
