"""`DbSession`: one session per request; GET and HEAD read without a transaction and cannot
write; every other method gets one transaction."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from typing import Annotated

import httpx
import pytest
from fastapi import Depends, FastAPI
from sqlalchemy import insert, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from app.db.session import DbSession
from app.factory import create_app
from app.settings import Settings
from devtools.pgcluster import PgCluster
from tests.notes import Note
from tests.support import asgi_client, make_settings


def _stored_notes(cluster: PgCluster) -> str:
    return cluster.psql("SELECT count(*) FROM test_notes", "app").strip()


@pytest.fixture
def commit_time_failure(migrated: PgCluster) -> Iterator[str]:
    """A deferred constraint trigger: the INSERT and flush succeed, the COMMIT fails."""
    refused = "fails-at-commit"
    migrated.psql(
        f"""
        CREATE FUNCTION test_fail_at_commit() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          IF NEW.text = '{refused}' THEN RAISE EXCEPTION 'refused at commit'; END IF;
          RETURN NEW;
        END $$;
        CREATE CONSTRAINT TRIGGER test_fail_at_commit AFTER INSERT ON test_notes
          DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION test_fail_at_commit();
        """,
        database="app",
    )
    try:
        yield refused
    finally:
        migrated.psql(
            "DROP TRIGGER test_fail_at_commit ON test_notes; DROP FUNCTION test_fail_at_commit();",
            database="app",
        )


async def _two_clock_reads(session: AsyncSession) -> dict[str, datetime]:
    """`now()` is the start of the transaction: equal twice inside one, apart outside."""
    first = (await session.execute(text("SELECT now()"))).scalar_one()
    await session.execute(text("SELECT pg_sleep(0.02)"))
    second = (await session.execute(text("SELECT now()"))).scalar_one()
    return {"first": first, "second": second}


def _in_one_transaction(body: dict[str, str]) -> bool:
    return body["first"] == body["second"]


async def same_session(session: DbSession) -> AsyncSession:
    return session


def _test_app(settings: Settings) -> FastAPI:
    app = create_app(settings)

    @app.get("/test/clock")
    async def read_clock(session: DbSession) -> dict[str, datetime]:
        return await _two_clock_reads(session)

    @app.post("/test/clock")
    async def write_clock(session: DbSession) -> dict[str, datetime]:
        return await _two_clock_reads(session)

    @app.get("/test/clock/snapshot")
    async def snapshot_clock(session: DbSession) -> dict[str, datetime]:
        await session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        return await _two_clock_reads(session)

    @app.get("/test/write/orm")
    async def orm_write_in_get(session: DbSession) -> None:
        session.add(Note(text="from a GET"))
        await session.flush()

    @app.get("/test/write/core")
    async def core_write_in_get(session: DbSession) -> None:
        await session.execute(insert(Note).values(text="from a GET"))

    @app.post("/test/write/orm")
    async def orm_write_in_post(session: DbSession, text: str = "from a POST") -> None:
        session.add(Note(text=text))

    @app.get("/test/two-dependencies")
    async def two_dependencies(
        session: DbSession, other: Annotated[AsyncSession, Depends(same_session)]
    ) -> dict[str, object]:
        await session.execute(select(1))
        await other.execute(select(1))
        return {"same": session is other}

    return app


@pytest.fixture
async def http(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(_test_app(settings)) as client:
        yield client


async def test_a_get_reads_without_a_transaction(http: httpx.AsyncClient) -> None:
    response = await http.get("/test/clock")
    assert response.status_code == 200
    assert not _in_one_transaction(response.json())


async def test_other_methods_get_one_transaction(http: httpx.AsyncClient) -> None:
    response = await http.post("/test/clock")
    assert response.status_code == 200
    assert _in_one_transaction(response.json())


async def test_a_get_can_ask_for_one_snapshot(http: httpx.AsyncClient) -> None:
    """The way a GET whose reads must agree (a page and its count) gets one transaction."""
    response = await http.get("/test/clock/snapshot")
    assert response.status_code == 200
    assert _in_one_transaction(response.json())
    # The connection went back to the pool as it came: the next GET has no transaction.
    assert not _in_one_transaction((await http.get("/test/clock")).json())


@pytest.mark.parametrize("how", ["orm", "core"])
async def test_a_get_that_writes_fails_and_writes_nothing(
    http: httpx.AsyncClient, migrated: PgCluster, how: str, capsys: pytest.CaptureFixture[str]
) -> None:
    response = await http.get(f"/test/write/{how}")
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    assert "ReadOnlyRequest: A GET or HEAD request cannot write" in capsys.readouterr().err
    assert _stored_notes(migrated) == "0"


async def test_a_post_writes_in_its_transaction(
    http: httpx.AsyncClient, migrated: PgCluster
) -> None:
    assert (await http.post("/test/write/orm")).status_code == 200
    assert _stored_notes(migrated) == "1"


async def test_a_failed_commit_is_not_reported_as_done(
    http: httpx.AsyncClient, migrated: PgCluster, commit_time_failure: str
) -> None:
    """The commit runs before the response is sent: its failure is the client's answer."""
    response = await http.post("/test/write/orm", params={"text": commit_time_failure})
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    assert "refused at commit" not in response.text
    assert _stored_notes(migrated) == "0"


async def test_dependencies_of_one_request_share_its_session(migrated: PgCluster) -> None:
    """One connection-gate slot per request: with room for one connection, a request whose
    dependencies both take `DbSession` still answers (two sessions would wait for each other
    until the pool timeout and answer 503)."""
    settings = make_settings(migrated, db={"pool_size": 1, "max_overflow": 0, "pool_timeout": 1})
    async with asgi_client(_test_app(settings)) as client:
        response = await client.get("/test/two-dependencies")
    assert response.status_code == 200
    assert response.json() == {"same": True}


async def test_behind_pgbouncer_a_get_keeps_its_transaction(migrated: PgCluster) -> None:
    """Outside a transaction, transaction pooling could prepare a statement on one server
    connection and execute it on another."""
    settings = make_settings(migrated, db={"pgbouncer": True})
    async with asgi_client(_test_app(settings)) as client:
        response = await client.get("/test/clock")
    assert response.status_code == 200
    assert _in_one_transaction(response.json())
