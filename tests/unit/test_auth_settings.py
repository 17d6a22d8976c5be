"""Authentication settings: production must choose, and every bad value is named at startup."""

from __future__ import annotations

from typing import Any

import pytest

from app.settings import SettingsError, load_settings

PROVIDER = {"mode": "oidc", "issuer": "https://login.example.com/realm", "audience": "api://svc"}


def problems(**auth: Any) -> list[str]:
    with pytest.raises(SettingsError) as caught:
        load_settings(_env_file=None, auth=auth)
    return caught.value.problems


def test_development_and_test_default_to_no_authentication() -> None:
    for env in ("development", "test"):
        assert load_settings(_env_file=None, app_env=env).auth_mode == "none"


def test_production_without_a_mode_does_not_start() -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(_env_file=None, app_env="production")
    assert any(
        line.startswith("AUTH__MODE: is required in production") for line in caught.value.problems
    )


def test_a_valid_provider_loads_with_the_issuer_as_written() -> None:
    settings = load_settings(_env_file=None, auth=PROVIDER)
    assert settings.auth_mode == "oidc"
    assert settings.auth.issuer == "https://login.example.com/realm"  # no slash added
    assert settings.auth.algorithms == ["RS256", "ES256"]


INVALID = [
    ({"mode": "sometimes"}, "AUTH__MODE"),
    ({"mode": "oidc", "audience": "api"}, "AUTH__ISSUER"),
    ({"mode": "oidc", "issuer": "https://idp.example.com"}, "AUTH__AUDIENCE"),
    (PROVIDER | {"issuer": "http://idp.example.com"}, "AUTH__ISSUER"),  # plain http, not loopback
    (PROVIDER | {"issuer": "idp.example.com"}, "AUTH__ISSUER"),
    (PROVIDER | {"jwks_url": "http://idp.example.com/keys"}, "AUTH__JWKS_URL"),
    (PROVIDER | {"algorithms": "none"}, "AUTH__ALGORITHMS"),
    (PROVIDER | {"algorithms": "RS256,HS256"}, "AUTH__ALGORITHMS"),
    (PROVIDER | {"algorithms": ""}, "AUTH__ALGORITHMS"),
    (PROVIDER | {"leeway_seconds": 3600}, "AUTH__LEEWAY_SECONDS"),
    (PROVIDER | {"jwks_refetch_seconds": 0}, "AUTH__JWKS_REFETCH_SECONDS"),
]


@pytest.mark.parametrize(("auth", "variable"), INVALID, ids=[v for _, v in INVALID])
def test_each_invalid_auth_setting_is_named(auth: dict[str, Any], variable: str) -> None:
    assert [line.split(":")[0] for line in problems(**auth)] == [variable]


def test_plain_http_is_allowed_for_a_provider_on_loopback() -> None:
    for host in ("127.0.0.1:8080", "localhost", "[::1]:9000"):
        settings = load_settings(_env_file=None, auth=PROVIDER | {"issuer": f"http://{host}"})
        assert settings.auth.issuer == f"http://{host}"
