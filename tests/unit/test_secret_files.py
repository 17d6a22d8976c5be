"""Secrets from files: `NAME_FILE` variables and a secrets directory (Docker, Kubernetes)."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.settings import SettingsError, load_settings

PASSWORD = "pw-from-a-file-81kq"
URL = f"postgresql://app:{PASSWORD}@db.internal:5432/app"


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("DATABASE_URL", "DATABASE_URL_FILE"):
        monkeypatch.delenv(name, raising=False)
    # An empty secrets directory unless a test fills it: never the machine's /run/secrets.
    monkeypatch.setenv("SECRETS_DIR", str(tmp_path / "no-secrets-here"))


def database_password(**env: object) -> str | None:
    url = load_settings(_env_file=None, **env).database_url_object()
    return url.password if url is not None else None


def test_a_name_file_variable_is_read_without_its_trailing_newline(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    secret = tmp_path / "database-url"
    secret.write_text(URL + "\n")
    monkeypatch.setenv("DATABASE_URL_FILE", str(secret))
    assert database_password() == PASSWORD


def test_a_file_in_the_secrets_directory_is_read(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "DATABASE_URL").write_text(URL)  # a Kubernetes Secret's key, as a file
    monkeypatch.setenv("SECRETS_DIR", str(secrets))
    assert database_password() == PASSWORD
    # A variable set in the environment wins over the directory.
    monkeypatch.setenv("DATABASE_URL", "postgresql://app:from-env@db.internal/app")
    assert database_password() == "from-env"


def test_the_variable_and_its_file_together_are_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    secret = tmp_path / "database-url"
    secret.write_text(URL)
    monkeypatch.setenv("DATABASE_URL_FILE", str(secret))
    monkeypatch.setenv("DATABASE_URL", URL)
    with pytest.raises(SettingsError) as caught:
        load_settings(_env_file=None)
    assert caught.value.problems == [
        "DATABASE_URL_FILE: DATABASE_URL is set as well; set only one of them"
    ]


def test_an_unreadable_file_is_named_with_the_other_problems(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    missing = tmp_path / "nowhere"
    monkeypatch.setenv("DATABASE_URL_FILE", str(missing))
    with pytest.raises(SettingsError) as caught:
        load_settings(_env_file=None, port="http")
    assert caught.value.problems[0] == (
        f"DATABASE_URL_FILE: cannot read {missing} (No such file or directory)"
    )
    assert [line.split(":")[0] for line in caught.value.problems] == ["DATABASE_URL_FILE", "PORT"]


def test_a_bad_value_from_a_file_is_named_and_never_echoed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    secret = tmp_path / "database-url"
    secret.write_text(f"mysql://app:{PASSWORD}@db.internal/app")
    monkeypatch.setenv("DATABASE_URL_FILE", str(secret))
    with pytest.raises(SettingsError) as caught:
        load_settings(_env_file=None)
    assert caught.value.problems[0].startswith("DATABASE_URL: uses driver 'mysql'")
    assert PASSWORD not in str(caught.value)
