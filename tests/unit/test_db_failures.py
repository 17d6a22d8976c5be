"""Classification of database errors: infrastructure (503/504, counted) or the caller's."""

from __future__ import annotations

import ssl

import pytest
import sqlalchemy.exc

from app.db.failures import failure_kind


class FakeDriverError(Exception):
    def __init__(self, sqlstate: str) -> None:
        super().__init__(f"sqlstate {sqlstate}")
        self.sqlstate = sqlstate


def dbapi(orig: BaseException, *, invalidated: bool = False) -> sqlalchemy.exc.DBAPIError:
    return sqlalchemy.exc.DBAPIError("SELECT 1", None, orig, connection_invalidated=invalidated)


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (ConnectionRefusedError(111, "refused"), "unavailable"),
        (ConnectionResetError(104, "reset"), "unavailable"),
        (ssl.SSLCertVerificationError("verify failed"), "unavailable"),
        (TimeoutError(), "timeout"),
        (sqlalchemy.exc.TimeoutError("QueuePool limit"), "unavailable"),
        (dbapi(Exception("gone"), invalidated=True), "unavailable"),
        (dbapi(FakeDriverError("57014")), "timeout"),  # statement_timeout
        (dbapi(FakeDriverError("57P01")), "unavailable"),  # admin shutdown
        (dbapi(FakeDriverError("53300")), "unavailable"),  # too many connections
        (dbapi(FakeDriverError("08006")), "unavailable"),  # connection failure
        (dbapi(FakeDriverError("23505")), None),  # unique violation: the caller's
        (dbapi(FakeDriverError("22P02")), None),  # invalid text representation
        (ValueError("bug"), None),
        (KeyError("bug"), None),
    ],
)
def test_failure_kind(error: BaseException, kind: str | None) -> None:
    assert failure_kind(error) == kind


def wrapped_refusal() -> RuntimeError:
    error = RuntimeError("wrapped")
    error.__cause__ = ConnectionRefusedError(111, "refused")
    return error


def test_the_cause_chain_is_followed() -> None:
    assert failure_kind(wrapped_refusal()) == "unavailable"
