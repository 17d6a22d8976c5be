"""The Idempotency-Key header and the request fingerprint."""

from __future__ import annotations

import pytest

from app.idempotency.keys import MAX_KEY_LENGTH, InvalidKey, fingerprint, parse_key


@pytest.mark.parametrize(
    ("header", "key"),
    [
        ('"8e03978e-40d5-43e8-bc93-6894a57f9324"', "8e03978e-40d5-43e8-bc93-6894a57f9324"),
        ("8e03978e-40d5-43e8-bc93-6894a57f9324", "8e03978e-40d5-43e8-bc93-6894a57f9324"),
        ('"a \\"quoted\\" \\\\ key"', 'a "quoted" \\ key'),
        ('  "spaced"  ', "spaced"),
        ('"' + "k" * MAX_KEY_LENGTH + '"', "k" * MAX_KEY_LENGTH),
    ],
)
def test_a_quoted_string_or_a_token_is_a_key(header: str, key: str) -> None:
    assert parse_key(header) == key


@pytest.mark.parametrize(
    "header",
    [
        '""',
        '"' + "k" * (MAX_KEY_LENGTH + 1) + '"',
        '"unterminated',
        '"bad \\n escape"',
        "two words",
        '"caf\u00e9"',
        "",
    ],
)
def test_anything_else_is_refused(header: str) -> None:
    with pytest.raises(InvalidKey):
        parse_key(header)


def test_the_fingerprint_tells_method_path_query_and_body_apart() -> None:
    base = fingerprint("POST", "/api/v1/items", b'{"name":"lamp"}')
    assert fingerprint("post", "/api/v1/items", b'{"name":"lamp"}') == base
    others = {
        fingerprint("PUT", "/api/v1/items", b'{"name":"lamp"}'),
        fingerprint("POST", "/api/v1/items?x=1", b'{"name":"lamp"}'),
        fingerprint("POST", "/api/v1/items", b'{"name":"lamps"}'),
        fingerprint("POST", "/api/v1/item", b's{"name":"lamp"}'),  # the same bytes, split apart
    }
    assert base not in others
    assert len(others) == 4
