"""Single-statement reads (`DbReads`): each statement on its own, outside any transaction.

Every call checks a connection out of the pool, runs one statement, fetches its rows and checks
the connection back in, all in one switch into SQLAlchemy's greenlet, behind the same breaker,
gate and error mapping as a transaction (`app/db/guard.py`). Rows come back as plain dicts.

How the statement runs: a Core `select()` that is built once and used again (the pattern of
`app/items/queries.py`) is compiled by SQLAlchemy once per worker and from then on executed by
asyncpg itself, on the same pooled connection SQLAlchemy would use. Measured here on
`GET /api/v1/items/{id}` under Gunicorn, SQLAlchemy's execution machinery (execution context,
cursor result, row processing, events) cost about 135 us of CPU per read, a quarter of the
request; asyncpg alone does the same work for a statement whose values need no conversion
(docs/adr/0005-read-path.md).

It is taken only where it is the same thing SQLAlchemy would do, decided from SQLAlchemy's own
execution of the statement (its second use, so a statement built per call is never compiled
here):
- a `Select` with no post-compile parameters (expanding IN) and no execution options;
- no bind processor for any parameter, no result processor for any column, asked of
  SQLAlchemy's types for this dialect and the column types the server reported: a `Boolean`
  parameter, `Enum`, `ARRAY`, `Numeric(asdecimal=False)`, `Uuid(as_uuid=False)` or a
  `TypeDecorator` that converts keeps the statement on SQLAlchemy's path;
- the SQL text and positional values this module builds equal what SQLAlchemy sent;
- result keys that are unique;
- and on every call: no event listener on execution or errors (tracing instrumentation, for
  one, hooks those), no `echo`, and not behind PgBouncer (there reads keep
  their transaction: app/lifespan.py says why).
Everything else goes through SQLAlchemy's `Connection.execute()`. Written by hand because
SQLAlchemy has no lighter execution path for Core; what is bypassed is listed above.

Failures are what SQLAlchemy would make of them, too: a statement interrupted by a cancel (the
request time limit, a client gone) or on a connection the server closed leaves a connection in
an unknown state, so it is invalidated rather than checked back in, as SQLAlchemy's
`Connection` does; an asyncpg error is translated as `Connection` translates it (the adapter's
DBAPI class, wrapped by `DBAPIError.instance`), so both paths raise the same exception.
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from sqlalchemy import Engine, Executable, Select
from sqlalchemy.engine import CursorResult
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.util import await_, greenlet_spawn

from app.db.database import Database, not_configured
from app.db.guard import guarded

Params = Mapping[str, Any] | None
Row = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Plan:
    """A statement compiled once, to be executed by the driver."""

    sql: str
    compiled: SQLCompiler  # this statement's own compilation: its bound values, its defaults
    names: tuple[str, ...]  # bind parameter names in $1, $2, ... order
    keys: tuple[str, ...]  # result keys, in column order

    def arguments(self, params: Params) -> list[Any]:
        values = self.compiled.construct_params(params)  # defaults; a missing value raises
        return [values[name] for name in self.names]


# A statement's state in the plan cache: seen once; or not to be planned (SQLAlchemy's path).
_SEEN_ONCE = "seen once"
_NEVER = "never"


def plan_from(result: CursorResult[Any], statement: Executable, params: Params) -> Plan | None:  # noqa: PLR0911 - one early answer per condition, in the order of the docstring
    """A plan for `statement` from SQLAlchemy's own execution of it, or None when the driver
    alone would not do exactly the same (see the module docstring)."""
    context = result.context
    cursor = result.cursor
    if not isinstance(statement, Select) or statement.get_execution_options() or cursor is None:
        return None
    dialect = context.dialect
    compiled = statement.compile(dialect=dialect)
    if not isinstance(compiled, SQLCompiler) or compiled.positiontup is None:
        return None
    if compiled.post_compile_params or compiled.literal_execute_params:
        return None
    for bind in compiled.binds.values():
        if bind.type.dialect_impl(dialect).bind_processor(dialect) is not None:
            return None
    columns = list(statement.selected_columns)
    keys = tuple(statement.selected_columns.keys())
    description = cursor.description
    if len(keys) != len(set(keys)) or description is None or len(description) != len(columns):
        return None
    for column, entry in zip(columns, description, strict=True):
        if column.type.dialect_impl(dialect).result_processor(dialect, entry[1]) is not None:
            return None
    plan = Plan(compiled.string, compiled, tuple(compiled.positiontup), keys)
    sent = context.parameters[0] if context.parameters else ()
    if plan.sql != context.statement or tuple(plan.arguments(params)) != tuple(sent):
        return None
    return plan


def _execute(
    engine: Engine, statement: Executable, params: Params, many: bool, learn: bool
) -> tuple[list[Row] | Row | None, Plan | None]:
    """SQLAlchemy's path (in the greenlet); with `learn`, also the statement's plan."""
    with engine.connect() as connection:
        result = connection.execute(statement, params)
        plan = plan_from(result, statement, params) if learn else None
        if many:
            return [dict(row._mapping) for row in result.all()], plan
        row = result.first()
        return (None if row is None else dict(row._mapping)), plan


def _execute_plan(engine: Engine, plan: Plan, params: Params, many: bool) -> list[Row] | Row | None:
    """The driver's path (in the greenlet): checkout, one statement, checkin."""
    arguments = plan.arguments(params)
    fairy = engine.raw_connection()
    driver: Any = fairy.driver_connection
    try:
        found = await_((driver.fetch if many else driver.fetchrow)(plan.sql, *arguments))
    except Exception as exc:
        error = _as_sqlalchemy_error(exc, engine, fairy, plan.sql, tuple(arguments))
        if driver.is_closed() or (isinstance(error, DBAPIError) and error.connection_invalidated):
            fairy.invalidate(exc)  # checks it in, discarded
        else:
            fairy.close()
        if not isinstance(error, DBAPIError):
            raise
        raise error from error.orig  # as Connection does: from the DBAPI error, from asyncpg's
    except BaseException as exc:
        fairy.invalidate(exc)  # cancelled mid-statement: its state is unknown
        raise
    fairy.close()
    keys = plan.keys
    if many:
        return [dict(zip(keys, record, strict=True)) for record in found]
    return None if found is None else dict(zip(keys, found, strict=True))


def _as_sqlalchemy_error(
    exc: Exception, engine: Engine, fairy: Any, sql: str, arguments: tuple[Any, ...]
) -> BaseException:
    """The exception SQLAlchemy's `Connection` would raise for `exc`, so both paths raise the
    same types: the adapter's DBAPI class for an asyncpg error, wrapped in the matching
    `sqlalchemy.exc` error; anything else (builtin TimeoutError, OSError) as it is."""
    dialect = engine.dialect
    dbapi_error = dialect.loaded_dbapi.Error
    translated: BaseException = exc
    try:
        fairy.dbapi_connection._handle_exception(exc)  # the adapter's own mapping; re-raises
    except Exception as raised:  # whatever the adapter made of it
        translated = raised
    if not isinstance(translated, dbapi_error):
        return exc
    return DBAPIError.instance(
        sql,
        arguments,
        translated,
        dbapi_error,
        hide_parameters=engine.hide_parameters,
        connection_invalidated=dialect.is_disconnect(translated, fairy.dbapi_connection, None),
        dialect=dialect,
        ismulti=False,
    )


class DbReads:
    """Single-statement reads on autocommit connections, for one worker's database."""

    def __init__(self, database: Database, *, driver_path: bool) -> None:
        self._database = database
        # The pool's connections in autocommit while checked out, for SQLAlchemy's path.
        self._reader = database.reader.sync_engine
        self._engine = database.engine.sync_engine
        self._driver_path = driver_path
        # Weak keys: a statement built per call leaves the cache with the statement.
        self._plans: weakref.WeakKeyDictionary[Executable, Plan | str] = weakref.WeakKeyDictionary()

    async def first(self, statement: Executable, params: Params = None) -> Row | None:
        """The first row as a dict, or None."""
        row: Row | None = await self._read(statement, params, many=False)
        return row

    async def all(self, statement: Executable, params: Params = None) -> Sequence[Row]:
        """Every row (the driver fetches them all anyway: bound the query with a LIMIT)."""
        rows: list[Row] = await self._read(statement, params, many=True)
        return rows

    def planned(self, statement: Executable) -> bool:
        """Whether `statement` now runs on the driver's path (for tests and operators)."""
        return isinstance(self._plans.get(statement), Plan)

    async def _read(self, statement: Executable, params: Params, *, many: bool) -> Any:
        plan = self._plans.get(statement) if self._driver_path else _NEVER
        async with guarded(self._database):
            if isinstance(plan, Plan) and self._driver_allowed():
                return await greenlet_spawn(_execute_plan, self._engine, plan, params, many)
            learn = plan is _SEEN_ONCE
            rows, new_plan = await greenlet_spawn(
                _execute, self._reader, statement, params, many, learn
            )
        if plan is None:
            self._plans[statement] = _SEEN_ONCE
        elif learn:
            self._plans[statement] = new_plan or _NEVER
        return rows

    def _driver_allowed(self) -> bool:
        """Nothing is listening to SQLAlchemy's execution that the driver's path would skip."""
        engine = self._reader
        dispatch = engine.dispatch
        return not (
            engine.echo
            or dispatch.before_execute
            or dispatch.after_execute
            or dispatch.before_cursor_execute
            or dispatch.after_cursor_execute
            or engine.dialect.dispatch.handle_error
            or engine.dialect.dispatch.do_execute
        )


STATE_KEY = "db_reads"


def reads_of(request: Request) -> DbReads:
    """This worker's `DbReads`, or a 503 when the deployment has no database configured."""
    found: DbReads | None = getattr(request.state, STATE_KEY, None)
    if found is None:
        raise not_configured()
    return found
