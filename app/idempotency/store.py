"""Claiming a key and keeping its answer, on the request's own session and transaction.

`claim` is one round trip to `idempotency_claim()` (created by the migration): it returns the
answer of a finished request with the key, or takes a transaction-level advisory lock on
(scope, key). The lock is released when the transaction ends however it ends (commit, rollback,
a killed worker's dropped connection), so a key is never left stuck. Holding it, the request
runs and `save` writes its answer, committed together with the request's writes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import Interval, bindparam, delete, func, text
from sqlalchemy.dialects.postgresql import JSONB, insert
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncSession

from app.idempotency.models import IdempotencyRecord

_CLAIM = text(
    "SELECT claimed, fingerprint, status, headers, body FROM idempotency_claim(:scope, :key)"
).columns(headers=JSONB)

_insert = insert(IdempotencyRecord).values(
    scope=bindparam("scope"),
    key=bindparam("key"),
    fingerprint=bindparam("fingerprint"),
    status=bindparam("status"),
    headers=bindparam("headers", type_=JSONB),
    body=bindparam("body"),
    created_at=func.now(),
    expires_at=func.now() + bindparam("keep", type_=Interval),
)
# Built once: a statement made per call is compiled per call.
_SAVE = _insert.on_conflict_do_update(
    index_elements=["scope", "key"],
    set_={
        name: _insert.excluded[name]
        for name in ("fingerprint", "status", "headers", "body", "created_at", "expires_at")
    },
)


class KeyInUse(Exception):
    """Another transaction holds the key: its request is still running."""


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True, slots=True)
class Stored:
    """The answer a finished request with the key committed, and what that request was."""

    fingerprint: bytes
    answer: Answer


async def claim(session: AsyncSession, scope: str, key: str) -> Stored | None:
    """The stored answer of a finished request with this key; else None, the key now held by
    this transaction. Raises `KeyInUse` while another transaction holds it."""
    row = (await session.execute(_CLAIM, {"scope": scope, "key": key})).one()
    if not row.claimed:
        raise KeyInUse
    if row.fingerprint is None:
        return None
    return Stored(row.fingerprint, Answer(row.status, row.headers, row.body))


async def save(
    session: AsyncSession,
    scope: str,
    key: str,
    *,
    fingerprint: bytes,
    answer: Answer,
    keep: timedelta,
) -> None:
    """The answer, replacing an expired record of the same key."""
    values = {
        "scope": scope,
        "key": key,
        "fingerprint": fingerprint,
        "status": answer.status,
        "headers": answer.headers,
        "body": answer.body,
        "keep": keep,
    }
    await session.execute(_SAVE, values)


async def prune_expired(session: AsyncSession) -> int:
    """Deletes the expired records (index on `expires_at`); how many there were."""
    expired = delete(IdempotencyRecord).where(IdempotencyRecord.expires_at <= func.now())
    deleted: CursorResult[Any] = await session.execute(expired)  # type: ignore[assignment]
    return deleted.rowcount
