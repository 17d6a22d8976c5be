"""TLS matrix against the throwaway PostgreSQL, which accepts only `hostssl` connections."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from app.db.engine import build_engine
from app.settings import DatabaseSettings, SslMode
from devtools.pgcluster import Certificates, PgCluster


async def ssl_in_use(cluster: PgCluster, host: str, db: DatabaseSettings) -> bool:
    engine = build_engine(make_url(cluster.url(host=host)), db, hide_parameters=True)
    try:
        async with engine.connect() as connection:
            query = text("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            return bool(await connection.scalar(query))
    finally:
        await engine.dispose()


@pytest.fixture(scope="module")
def wrong_ca(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("wrong-ca") / "ca.crt"
    path.write_bytes(Certificates.new_ca("an unrelated CA").ca_cert)
    return path


async def test_verify_full_with_the_right_ca_via_the_certificate_name(pg: PgCluster) -> None:
    db = DatabaseSettings(sslmode=SslMode.VERIFY_FULL, sslrootcert=pg.ca_file)
    assert await ssl_in_use(pg, "localhost", db) is True


async def test_verify_full_with_a_wrong_ca_fails_verification(
    pg: PgCluster, wrong_ca: Path
) -> None:
    db = DatabaseSettings(sslmode=SslMode.VERIFY_FULL, sslrootcert=wrong_ca)
    with pytest.raises(ssl.SSLCertVerificationError, match="certificate verify failed"):
        await ssl_in_use(pg, "localhost", db)


async def test_verify_full_via_an_ip_the_certificate_does_not_name_fails(pg: PgCluster) -> None:
    db = DatabaseSettings(sslmode=SslMode.VERIFY_FULL, sslrootcert=pg.ca_file)
    with pytest.raises(ssl.SSLCertVerificationError, match=r"127\.0\.0\.1"):
        await ssl_in_use(pg, "127.0.0.1", db)


async def test_verify_ca_accepts_the_ip_because_it_skips_the_name(pg: PgCluster) -> None:
    db = DatabaseSettings(sslmode=SslMode.VERIFY_CA, sslrootcert=pg.ca_file)
    assert await ssl_in_use(pg, "127.0.0.1", db) is True


async def test_require_encrypts_without_verifying(pg: PgCluster) -> None:
    db = DatabaseSettings(sslmode=SslMode.REQUIRE)
    assert await ssl_in_use(pg, "127.0.0.1", db) is True


async def test_disable_is_rejected_by_a_hostssl_only_server(pg: PgCluster) -> None:
    db = DatabaseSettings(sslmode=SslMode.DISABLE)
    with pytest.raises(DBAPIError, match="no encryption"):
        await ssl_in_use(pg, "localhost", db)
