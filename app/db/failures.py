"""Which database errors are the database's fault, and how a client should hear about them.

The taxonomy comes from what was seen against PostgreSQL 15 with asyncpg (docs/facts.md): a
stopped server raises a plain `ConnectionRefusedError`; a restart mid-use a `DBAPIError` with
`connection_invalidated`; asyncpg's `command_timeout` the builtin `TimeoutError`; the server's
`statement_timeout` a `DBAPIError` with SQLSTATE 57014; the pool a `sqlalchemy.exc.TimeoutError`.
Errors the caller caused (constraint violations, bad data) are none of these.
"""

from __future__ import annotations

from typing import Literal

import sqlalchemy.exc

Failure = Literal["unavailable", "timeout"]

# SQLSTATE classes and codes that say "the database cannot serve you right now".
_UNAVAILABLE_CLASSES = ("08", "53", "57P", "58")  # connection, resources, shutdown, system
_TIMEOUT_CODES = frozenset({"57014"})  # query_canceled: statement_timeout or a cancel request
_MAX_CHAIN = 6


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and len(seen) < _MAX_CHAIN and current not in seen:
        seen.append(current)
        orig = getattr(current, "orig", None)
        current = orig if isinstance(orig, BaseException) else current.__cause__
    return seen


def failure_kind(exc: BaseException) -> Failure | None:
    """ "unavailable" or "timeout" for infrastructure failures; None for everything else."""
    for error in _chain(exc):
        kind = _kind_by_type(error)
        if kind is not None:
            return kind
        sqlstate = getattr(error, "sqlstate", None)
        if isinstance(sqlstate, str):
            return _kind_by_sqlstate(sqlstate)  # the server answered about this statement
        if _is_connection_error(error):
            return "unavailable"
    return None


def _kind_by_type(error: BaseException) -> Failure | None:
    if isinstance(error, sqlalchemy.exc.TimeoutError):
        return "unavailable"  # no pooled connection came free: the pool is exhausted
    if isinstance(error, TimeoutError):
        return "timeout"  # asyncpg command or connect timeout
    if isinstance(error, sqlalchemy.exc.DBAPIError) and error.connection_invalidated:
        return "unavailable"
    return None


def _kind_by_sqlstate(sqlstate: str) -> Failure | None:
    if sqlstate in _TIMEOUT_CODES:
        return "timeout"
    if sqlstate.startswith(_UNAVAILABLE_CLASSES):
        return "unavailable"
    return None  # about the statement itself: the caller's business


def _is_connection_error(error: BaseException) -> bool:
    """Refused, reset, TLS, DNS, a closed connection; asyncpg's own when not wrapped."""
    return isinstance(error, OSError | sqlalchemy.exc.InterfaceError) or type(error).__name__ in (
        "InterfaceError",
        "ConnectionDoesNotExistError",
    )


def is_infrastructure_failure(exc: BaseException) -> bool:
    return failure_kind(exc) is not None
