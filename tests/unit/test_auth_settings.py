"""Authentication settings: production must choose, and every bad value is named at startup."""

from __future__ import annotations

from pathlib import Path
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


# Plain http to the provider: only these hosts, named exactly, count as this machine.
LOOPBACK = ["localhost", "LOCALHOST", "127.0.0.1", "[::1]", "localhost:8080", "[::1]:9000"]
LOOK_ALIKES = [
    "localhost.evil.example",
    "127.0.0.1.evil.example",
    "127.0.0.1@evil.example",  # user info: the host is evil.example
    "localhost:8080@evil.example",
    "localhost.",  # the root dot: a name the resolver may send elsewhere
    "127.0.0.2",  # loopback too, but not one of the names allowed
    "[::ffff:127.0.0.1]",  # IPv4-mapped: refused, only the three canonical names count
    "evil.example#@localhost",
    "evil.example?localhost",
    "evil.example/localhost",
    "0x7f.0.0.1",
    "2130706433",  # 127.0.0.1 as one number
]


@pytest.mark.parametrize("host", LOOPBACK)
def test_plain_http_is_allowed_for_a_provider_on_loopback(host: str) -> None:
    for variable in ("issuer", "jwks_url"):
        settings = load_settings(_env_file=None, auth=PROVIDER | {variable: f"http://{host}/x"})
        assert getattr(settings.auth, variable) == f"http://{host}/x"


@pytest.mark.parametrize("host", LOOK_ALIKES)
def test_plain_http_to_a_look_alike_of_loopback_is_refused(host: str) -> None:
    assert problems(**PROVIDER | {"issuer": f"http://{host}"}) == [
        "AUTH__ISSUER: must be https (plain http only on loopback)"
    ]
    assert problems(**PROVIDER | {"jwks_url": f"http://{host}/keys"}) == [
        "AUTH__JWKS_URL: must be https (plain http only on loopback)"
    ]


@pytest.mark.parametrize(
    "url", ["idp.example.com", "ftp://idp.example.com", "https://", "https:///x"]
)
def test_a_provider_url_must_be_http_or_https_with_a_host(url: str) -> None:
    for variable in ("issuer", "jwks_url"):
        assert problems(**PROVIDER | {variable: url}) == [
            f"AUTH__{variable.upper()}: Value error, must be an http(s) URL"
        ]


def test_https_to_any_host_is_allowed() -> None:
    for host in ("localhost.evil.example", "127.0.0.2", "login.example.com"):
        assert load_settings(_env_file=None, auth=PROVIDER | {"issuer": f"https://{host}"})


PRODUCTION = {
    "app_env": "production",
    "database_url": "postgresql+asyncpg://app:secret@db.example.com/app",
    "db": {"sslmode": "require", "allow_insecure_tls": True},
    "http": {"allowed_hosts": ["api.example.com"]},
}


@pytest.mark.parametrize("variable", ["issuer", "jwks_url"])
def test_production_takes_the_provider_over_https_only_even_on_loopback(variable: str) -> None:
    auth = PROVIDER | {variable: "http://127.0.0.1:8080/keys"}
    with pytest.raises(SettingsError) as caught:
        load_settings(_env_file=None, auth=auth, **PRODUCTION)
    assert caught.value.problems == [f"AUTH__{variable.upper()}: must be https in production"]
    assert (
        load_settings(_env_file=None, auth=PROVIDER, **PRODUCTION).auth.issuer
        == (PROVIDER["issuer"])
    )


def test_a_provider_ca_file_must_exist(tmp_path: Path) -> None:
    assert problems(**PROVIDER | {"ca_file": tmp_path / "missing.pem"}) == [
        "AUTH__CA_FILE: is not a readable file"
    ]
    (tmp_path / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    assert load_settings(_env_file=None, auth=PROVIDER | {"ca_file": tmp_path / "ca.pem"})
