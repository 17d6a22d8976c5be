"""Settings validation in-process: every problem named by its variable, no value echoed."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel

from app.settings import (
    DatabaseSettings,  # jobs-only
    JobsSettings,  # jobs-only
    Settings,
    SettingsError,
    SslMode,
    load_settings,
)

SECRET_IN_URL = "pw-Zq81-not-for-logs"


def problems(**env: object) -> list[str]:
    with pytest.raises(SettingsError) as caught:
        load_settings(_env_file=None, **env)
    return caught.value.problems


def names(found: list[str]) -> set[str]:
    return {line.split(":", 1)[0] for line in found}


def test_all_invalid_values_are_reported_together_by_variable_name() -> None:
    found = problems(port="http", db={"pool_size": -1, "sslmode": "sometimes"})
    assert names(found) == {"PORT", "DB__POOL_SIZE", "DB__SSLMODE"}


def test_all_production_rules_are_reported_together_whatever_the_field_order() -> None:
    found = problems(app_env="production")
    assert names(found) == {"DATABASE_URL", "DB__SSLMODE", "AUTH__MODE", "HTTP__ALLOWED_HOSTS"}
    assert len(found) == 4  # one line each


def test_the_production_rules_apply_to_production_only() -> None:
    assert load_settings(_env_file=None, app_env="test").database_url is None


def test_valid_production_settings_load(tmp_path: Path) -> None:
    ca = tmp_path / "ca.crt"
    ca.write_text("x")
    settings = load_settings(
        _env_file=None,
        app_env="production",
        http={"allowed_hosts": "api.example.com,*.internal"},
        database_url=f"postgres://app:{SECRET_IN_URL}@db.internal:5432/app",
        db={"sslmode": "verify-full", "sslrootcert": ca},
        auth={"mode": "oidc", "issuer": "https://login.example.com", "audience": "api"},
    )
    assert settings.http.allowed_hosts == ["api.example.com", "*.internal"]
    url = settings.database_url_object()
    assert url is not None
    assert url.drivername == "postgresql+asyncpg"
    assert SECRET_IN_URL not in url.render_as_string(hide_password=True)
    assert SECRET_IN_URL not in repr(settings)


@pytest.mark.parametrize(
    ("query", "hint"),
    [("sslmode=require", "DB__SSLMODE"), ("sslrootcert=/ca.pem", "DB__SSLROOTCERT")],
)
def test_libpq_parameters_in_the_url_point_to_the_setting(query: str, hint: str) -> None:
    found = problems(database_url=f"postgresql://u:{SECRET_IN_URL}@db/app?{query}")
    assert found[0].startswith("DATABASE_URL:")
    assert hint in found[0]
    assert SECRET_IN_URL not in str(found)


def test_other_drivers_are_refused() -> None:
    found = problems(database_url="mysql://u:p@db/app")
    assert found[0].startswith("DATABASE_URL:")


def test_verifying_tls_needs_a_ca_file(tmp_path: Path) -> None:
    assert problems(db={"sslmode": "verify-full"})[0].startswith("DB__SSLROOTCERT:")
    missing = tmp_path / "absent.crt"
    assert problems(db={"sslmode": "verify-ca", "sslrootcert": missing})[0].startswith(
        "DB__SSLROOTCERT:"
    )


def test_production_refuses_weak_tls_unless_overridden() -> None:
    base = {
        "app_env": "production",
        "http": {"allowed_hosts": ["api.example.com"]},
        "database_url": "postgresql://u:p@db/app",
        "auth": {"mode": "none"},
    }
    assert problems(**base, db={"sslmode": "require"})[0].startswith("DB__SSLMODE:")
    allowed = load_settings(
        _env_file=None, **base, db={"sslmode": "require", "allow_insecure_tls": True}
    )
    assert allowed.db.sslmode is SslMode.REQUIRE


def test_timeouts_nest_inside_the_request_time_limit() -> None:
    found = problems(db={"command_timeout": 12, "statement_timeout_ms": 1000})
    assert found[0].startswith("DB__COMMAND_TIMEOUT:")
    found = problems(server={"graceful_timeout": 5}, http={"request_timeout": 10})
    assert found[0].startswith("SERVER__GRACEFUL_TIMEOUT:")


def test_statement_timeout_must_stay_below_command_timeout() -> None:
    found = problems(db={"statement_timeout_ms": 9000, "command_timeout": 5})
    assert found[0].startswith("DB__STATEMENT_TIMEOUT_MS:")


def test_environment_variables_use_group_delimiter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DB__POOL_SIZE", "3")
    monkeypatch.setenv("PROBES__READY_TIMEOUT", "0.25")
    settings = load_settings(_env_file=None)
    assert settings.db.pool_size == 3
    assert settings.probes.ready_timeout == 0.25


def test_every_setting_is_documented_in_env_example() -> None:
    """`.env.example` is the settings reference: each variable appears there as `NAME=`."""
    documented = (Path(__file__).resolve().parents[2] / ".env.example").read_text()
    names = []
    for field, info in Settings.model_fields.items():
        group = info.annotation
        if isinstance(group, type) and issubclass(group, BaseModel):
            names += [f"{field}__{sub}".upper() for sub in group.model_fields]
        else:
            names.append(field.upper())
    missing = [name for name in names if f"{name}=" not in documented]
    assert missing == []


# The whole message a misconfigured start prints: what the operator reads to fix it.
MESSAGES = [
    ({"database_url": "not a url"}, ["DATABASE_URL: is not a database URL"]),
    (
        {"database_url": "mysql://u:p@h/db"},
        [
            "DATABASE_URL: uses driver 'mysql'; this service speaks PostgreSQL through asyncpg "
            "(postgresql:// or postgresql+asyncpg://)"
        ],
    ),
    (
        {"database_url": "postgresql://u:p@h/db?sslmode=require&foo=1"},
        [
            "DATABASE_URL: has query parameters asyncpg would not understand "
            "('foo': not supported here; 'sslmode': set DB__SSLMODE instead)"
        ],
    ),
    ({"database_url": "postgresql://u:p@h"}, ["DATABASE_URL: names no database"]),
    ({"db": {"bogus": 1}}, ["DB__BOGUS: is not a known setting"]),
    (
        {"db": {"pool_size": 0}, "http": {"request_timeout": -1}},
        [
            "DB__POOL_SIZE: Input should be greater than or equal to 1",
            "HTTP__REQUEST_TIMEOUT: Input should be greater than 0",
        ],
    ),
]


@pytest.mark.parametrize(("env", "lines"), MESSAGES)
def test_the_message_names_each_variable_and_what_is_wrong(
    env: dict[str, object], lines: list[str]
) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(_env_file=None, **env)
    count = f"{len(lines)} problem{'s' if len(lines) > 1 else ''}"
    expected = f"Invalid configuration ({count}):\n" + "\n".join(f"  - {line}" for line in lines)
    assert str(caught.value) == expected
    assert caught.value.problems == lines


# jobs-only
def test_the_worker_connects_directly_even_when_the_web_tier_uses_pgbouncer() -> None:
    direct = "postgresql://app:pw@db.internal/app"
    pooled = "postgresql://app:pw@pgbouncer:6432/app"
    alone = Settings(_env_file=None, database_url=direct)
    assert alone.jobs_database_url_object().host == "db.internal"
    pgbouncer = DatabaseSettings(pgbouncer=True)
    behind = Settings(_env_file=None, database_url=pooled, db=pgbouncer)
    with pytest.raises(SettingsError, match="JOBS__DATABASE_URL: is required when DB__PGBOUNCER"):
        behind.jobs_database_url_object()
    jobs = JobsSettings(database_url=direct)
    own = Settings(_env_file=None, database_url=pooled, db=pgbouncer, jobs=jobs)
    assert own.jobs_database_url_object().host == "db.internal"
    with pytest.raises(SettingsError, match="JOBS__DATABASE_URL"):
        Settings(_env_file=None).jobs_database_url_object()


def test_the_workers_url_can_come_from_a_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = tmp_path / "jobs_url"
    secret.write_text("postgresql://app:pw@db.internal/app\n")
    monkeypatch.setenv("JOBS__DATABASE_URL_FILE", str(secret))
    loaded = load_settings(_env_file=None)
    assert loaded.jobs_database_url_object().host == "db.internal"


# /jobs-only
