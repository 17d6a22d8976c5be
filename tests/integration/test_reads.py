"""`DbReads`: a statement used again runs on the driver's path, and nothing a caller can see
differs from SQLAlchemy's path: rows, Python types, exceptions, what happens to connections."""

from __future__ import annotations

import asyncio
import gc
import time
import weakref
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import sqlalchemy.exc
from sqlalchemy import (
    ARRAY,
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Enum,
    Float,
    Integer,
    Interval,
    LargeBinary,
    MetaData,
    Numeric,
    Select,
    SmallInteger,
    String,
    Table,
    Text,
    Time,
    TypeDecorator,
    Uuid,
    bindparam,
    event,
    func,
    literal,
    select,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect

from app.db.database import Database
from app.db.reads import DbReads
from app.lifespan import build_database
from app.settings import Settings
from devtools.pgcluster import PgCluster


class Shouting(TypeDecorator[str]):
    """Converts what it reads: SQLAlchemy must keep running its result processor."""

    impl = Text
    cache_ok = True

    def process_result_value(self, value: str | None, dialect: Dialect) -> str | None:
        return None if value is None else value.upper()


class Plain(TypeDecorator[str]):
    """Converts nothing: no processor, so nothing stops the driver's path."""

    impl = Text
    cache_ok = True


metadata = MetaData()
kinds = Table(
    "read_kinds",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("i", Integer),
    Column("small", SmallInteger),
    Column("s", String(20)),
    Column("t", Text),
    Column("b", Boolean),
    Column("ts", DateTime(timezone=True)),
    Column("naive", DateTime),
    Column("d", Date),
    Column("tm", Time),
    Column("u", Uuid),
    Column("u_text", Uuid(as_uuid=False)),
    Column("f", Float),
    Column("n", Numeric(10, 2)),
    Column("n_float", Numeric(10, 2, asdecimal=False)),
    Column("raw", LargeBinary),
    Column("doc", JSONB),
    Column("span", Interval),
    Column("mood", Enum("happy", "sad", name="read_kinds_mood")),
    Column("ints", ARRAY(Integer)),
    Column("shout", Shouting),
    Column("quiet", Plain),
)
# Columns whose values SQLAlchemy's asyncpg dialect hands over as the driver made them.
AS_THE_DRIVER_READS = [
    "i", "small", "s", "t", "b", "ts", "naive", "d", "tm", "u", "f", "n", "raw", "doc", "span",
    "quiet",
]  # fmt: skip
# Columns SQLAlchemy converts on the way out, with what it makes of row 1's value.
CONVERTED = {
    "u_text": "a0a1a2a3-b4b5-c6c7-d8d9-e0e1e2e3e4e5",  # str, not uuid.UUID
    "n_float": 12.34,  # float, not Decimal
    "mood": "happy",
    "ints": [1, 2],
    "shout": "LOUD",
}


@pytest.fixture(scope="module")
def kinds_table(migrated: PgCluster) -> Iterator[None]:
    migrated.psql(
        """
        CREATE TYPE read_kinds_mood AS ENUM ('happy', 'sad');
        CREATE TABLE read_kinds (
          id bigint PRIMARY KEY, i integer, small smallint, s varchar(20), t text, b boolean,
          ts timestamptz, naive timestamp, d date, tm time, u uuid, u_text uuid,
          f double precision, n numeric(10,2), n_float numeric(10,2), raw bytea, doc jsonb,
          span interval, mood read_kinds_mood, ints integer[], shout text, quiet text);
        INSERT INTO read_kinds VALUES
          (1, 7, 3, 'str', 'text', true, '2026-12-01 10:00:00.123456+00',
           '2026-12-01 10:00:00', '2026-12-01', '10:00:00',
           'a0a1a2a3-b4b5-c6c7-d8d9-e0e1e2e3e4e5', 'a0a1a2a3-b4b5-c6c7-d8d9-e0e1e2e3e4e5',
           1.5, 12.34, 12.34, '\\x00ff', '{"a": [1, 2]}', '1 day 02:00:00', 'happy', '{1,2}',
           'loud', 'soft'),
          (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
           NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
          (3, 9, NULL, NULL, NULL, false, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
           NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
        ALTER TABLE read_kinds OWNER TO app;
        """,
        database="app",
    )
    try:
        yield
    finally:
        migrated.psql("DROP TABLE read_kinds; DROP TYPE read_kinds_mood;", database="app")


@pytest.fixture
async def database(settings: Settings, kinds_table: None) -> AsyncIterator[Database]:
    url = settings.database_url_object()
    assert url is not None
    found = build_database(settings, url)
    try:
        yield found
    finally:
        await found.engine.dispose()


@pytest.fixture
def reads(database: Database) -> DbReads:
    return DbReads(database, driver_path=True)


async def sqlalchemy_rows(database: Database, statement: Select[Any], params: Any) -> Any:
    """What SQLAlchemy's own `Connection.execute()` returns, as dicts."""
    async with database.reader.connect() as connection:
        result = await connection.execute(statement, params)
        return [dict(row._mapping) for row in result.all()]


def typed(rows: list[dict[str, Any]]) -> list[dict[str, tuple[type, Any]]]:
    return [{key: (type(value), value) for key, value in row.items()} for row in rows]


@pytest.mark.parametrize("name", AS_THE_DRIVER_READS)
async def test_a_statement_used_again_reads_the_same_values_on_the_driver_path(
    reads: DbReads, database: Database, name: str
) -> None:
    statement = select(kinds.c.id, kinds.c[name]).order_by(kinds.c.id)
    expected = await sqlalchemy_rows(database, statement, None)
    for _ in range(2):  # the first use is SQLAlchemy's, the second plans it
        assert not reads.planned(statement)
        assert typed(list(await reads.all(statement))) == typed(expected)
    assert reads.planned(statement)
    for _ in range(2):
        assert typed(list(await reads.all(statement))) == typed(expected)
    readable = [kinds.c.id, *(kinds.c[column] for column in AS_THE_DRIVER_READS)]
    by_id = select(*readable).where(kinds.c.id == bindparam("id"))
    for _ in range(3):
        row = await reads.first(by_id, {"id": 1})
    assert reads.planned(by_id)
    assert row is not None
    assert typed([row]) == typed(await sqlalchemy_rows(database, by_id, {"id": 1}))
    assert await reads.first(by_id, {"id": 404}) is None


@pytest.mark.parametrize(("name", "value"), CONVERTED.items())
async def test_columns_sqlalchemy_converts_stay_on_its_path(
    reads: DbReads, name: str, value: object
) -> None:
    statement = select(kinds.c[name]).where(kinds.c.id == bindparam("id"))
    for _ in range(4):
        row = await reads.first(statement, {"id": 1})
        assert row == {name: value}
        assert type(row[name]) is type(value)
    assert not reads.planned(statement)


async def test_a_parameter_sqlalchemy_converts_stays_on_its_path(reads: DbReads) -> None:
    statement = select(kinds.c.id).where(kinds.c.b == bindparam("flag")).order_by(kinds.c.id)
    for flag, ids in ((True, [1]), (False, [3]), (True, [1])):
        assert [row["id"] for row in await reads.all(statement, {"flag": flag})] == ids
    assert not reads.planned(statement)


async def test_statements_with_the_same_shape_keep_their_own_values(reads: DbReads) -> None:
    """SQLAlchemy compiles both once (same cache key, different LIMIT): each plan must still
    send its own statement's value."""
    first_one = select(kinds.c.id).order_by(kinds.c.id).limit(1)
    first_two = select(kinds.c.id).order_by(kinds.c.id).limit(2)
    for _ in range(3):
        assert [row["id"] for row in await reads.all(first_one)] == [1]
        assert [row["id"] for row in await reads.all(first_two)] == [1, 2]
    assert reads.planned(first_one)
    assert reads.planned(first_two)


async def test_defaults_and_required_values_of_bound_parameters_are_kept(reads: DbReads) -> None:
    statement = select(kinds.c.id).where(
        kinds.c.id >= bindparam("low", value=2), kinds.c.id <= bindparam("high")
    )
    for _ in range(3):
        assert [row["id"] for row in await reads.all(statement, {"high": 3})] == [2, 3]
    assert reads.planned(statement)
    assert [row["id"] for row in await reads.all(statement, {"low": 1, "high": 1})] == [1]
    with pytest.raises(sqlalchemy.exc.InvalidRequestError, match="high"):
        await reads.all(statement)


async def test_statements_built_per_call_are_never_planned_nor_kept_alive(
    reads: DbReads,
) -> None:
    refs = []
    for high in (1, 2, 3, 3):
        statement = select(kinds.c.id).where(kinds.c.id <= high)
        assert len(await reads.all(statement)) == high
        assert not reads.planned(statement)
        refs.append(weakref.ref(statement))
    del statement
    gc.collect()
    alive = [ref() for ref in refs if ref() is not None]
    # SQLAlchemy's compiled cache holds the first statement of a shape; the plans hold none.
    assert len(alive) <= 1
    assert len(reads._plans) == len(alive)


async def test_an_expanding_in_stays_on_sqlalchemys_path(reads: DbReads) -> None:
    statement = select(kinds.c.id).where(kinds.c.id.in_(bindparam("ids", expanding=True)))
    for ids in ([1], [1, 3], [2], [1, 2, 3]):
        found = sorted(row["id"] for row in await reads.all(statement, {"ids": ids}))
        assert found == ids
    assert not reads.planned(statement)


async def test_an_execution_listener_sees_every_read_while_it_listens(
    reads: DbReads, database: Database
) -> None:
    """Tracing instrumentation hooks SQLAlchemy's execution events: the driver's path must not
    hide reads from it."""
    statement = select(kinds.c.id).where(kinds.c.id == bindparam("id"))
    for _ in range(3):
        await reads.first(statement, {"id": 1})
    assert reads.planned(statement)
    seen: list[str] = []

    def listener(*args: Any) -> None:
        seen.append(args[2])  # the statement text

    engine = database.engine.sync_engine
    event.listen(engine, "before_cursor_execute", listener)
    try:
        assert await reads.first(statement, {"id": 1}) == {"id": 1}
        assert len(seen) == 1
    finally:
        event.remove(engine, "before_cursor_execute", listener)
    assert await reads.first(statement, {"id": 1}) == {"id": 1}
    assert len(seen) == 1


async def test_an_error_is_the_same_exception_on_both_paths(
    reads: DbReads, database: Database
) -> None:
    statement = select((literal(10, Integer) / bindparam("d", type_=Integer)).label("q"))
    for _ in range(3):
        assert await reads.first(statement, {"d": 2}) == {"q": 5}
    assert reads.planned(statement)
    with pytest.raises(sqlalchemy.exc.DBAPIError) as on_the_driver:
        await reads.first(statement, {"d": 0})
    with pytest.raises(sqlalchemy.exc.DBAPIError) as on_sqlalchemy:
        await DbReads(database, driver_path=True).first(statement, {"d": 0})
    driver_error, sqlalchemy_error = on_the_driver.value, on_sqlalchemy.value
    assert type(driver_error) is type(sqlalchemy_error)
    assert str(driver_error) == str(sqlalchemy_error)
    assert driver_error.orig is not None
    assert sqlalchemy_error.orig is not None
    assert type(driver_error.orig) is type(sqlalchemy_error.orig)
    assert type(driver_error.__cause__) is type(sqlalchemy_error.__cause__)
    assert type(driver_error.orig.__cause__) is type(sqlalchemy_error.orig.__cause__)
    assert not driver_error.connection_invalidated
    # A statement error says nothing about the database: the breaker did not count it.
    assert database.breaker.state.value == "closed"
    assert await reads.first(statement, {"d": 5}) == {"q": 2}


def active_sleeps(pg: PgCluster) -> int:
    out = pg.psql(
        "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%pg_sleep%' "
        "AND state = 'active' AND pid <> pg_backend_pid()",
        database="app",
    )
    return int(out.strip())


BACKEND_PID = select(func.pg_backend_pid().label("pid"))


async def backend_pid(reads: DbReads) -> int:
    row = await reads.first(BACKEND_PID)
    assert row is not None
    return int(row["pid"])


async def test_a_cancelled_read_discards_its_connection_and_its_query(
    reads: DbReads, database: Database, migrated: PgCluster
) -> None:
    statement = select(func.pg_sleep(bindparam("s", type_=Float)))
    for _ in range(3):
        await reads.first(statement, {"s": 0})
        before = await backend_pid(reads)
    assert reads.planned(statement)
    assert reads.planned(BACKEND_PID)
    task = asyncio.create_task(reads.first(statement, {"s": 10}))
    await asyncio.sleep(0.5)
    assert active_sleeps(migrated) == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    pool: Any = database.engine.pool
    assert pool.checkedout() == 0
    deadline = time.monotonic() + 5
    # Polling the server's own view: nothing here signals when asyncpg's cancel has landed.
    while active_sleeps(migrated) and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.1)
    assert active_sleeps(migrated) == 0  # the server is not left running it
    # Not put back in an unknown state: the next read runs on another server connection.
    assert await backend_pid(reads) != before


async def test_a_connection_the_server_closed_is_replaced_without_an_error(
    reads: DbReads, database: Database, migrated: PgCluster, settings: Settings
) -> None:
    statement = select(kinds.c.id).where(kinds.c.id == bindparam("id"))
    for _ in range(3):
        await reads.first(statement, {"id": 1})
    assert reads.planned(statement)
    migrated.psql(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "  # noqa: S608 - our own setting
        f"WHERE application_name = '{settings.db.application_name}'",
        database="app",
    )
    await asyncio.sleep(0.2)  # the event loop reads the server's goodbye
    assert await reads.first(statement, {"id": 1}) == {"id": 1}
    assert database.breaker.state.value == "closed"


async def test_behind_pgbouncer_nothing_is_planned(database: Database) -> None:
    reads = DbReads(database, driver_path=False)
    statement = select(kinds.c.id).where(kinds.c.id == bindparam("id"))
    for _ in range(4):
        assert await reads.first(statement, {"id": 3}) == {"id": 3}
    assert not reads.planned(statement)


async def test_the_driver_path_checks_every_connection_back_in(
    reads: DbReads, database: Database, settings: Settings
) -> None:
    statement = select(kinds.c.id).where(kinds.c.id == bindparam("id"))
    for _ in range(2):
        await reads.first(statement, {"id": 1})
    assert reads.planned(statement)
    results = await asyncio.gather(*(reads.first(statement, {"id": 1}) for _ in range(40)))
    assert results == [{"id": 1}] * 40
    pool: Any = database.engine.pool
    assert pool.checkedout() == 0
    assert pool.checkedin() == settings.db.pool_size  # 40 readers at a gate of pool size
