"""Claiming a key and keeping its answer, on the request's own session and transaction.

`claim` is one round trip to `idempotency_claim()` (created by the migration): it returns the
answer of a finished request with the key, or takes a transaction-level advisory lock on
(scope, key). The lock is released when the transaction ends however it ends (commit, rollback,
a killed worker's dropped connection), so a key is never left stuck. Holding it, the request
runs and `save` writes its answer, committed together with the request's writes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import asyncpg
from sqlalchemy import delete, func, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncSession

from app.idempotency.models import IdempotencyRecord

_CLAIM = text(
    "SELECT claimed, fingerprint, status, headers, body FROM idempotency_claim(:scope, :key)"
).columns(headers=JSONB)

# On the session's asyncpg connection, inside its transaction (begun by `claim`): through the
# ORM session this INSERT cost 2.4 times the CPU, through Core 1.4 times (docs/benchmarks.md).
_SAVE = """
INSERT INTO idempotency_keys
  (scope, key, fingerprint, status, headers, body, created_at, expires_at)
VALUES ($1, $2, $3, $4, $5::jsonb, $6, now(), now() + $7::interval)
ON CONFLICT (scope, key) DO UPDATE SET
  fingerprint = excluded.fingerprint, status = excluded.status, headers = excluded.headers,
  body = excluded.body, created_at = excluded.created_at, expires_at = excluded.expires_at
"""


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
    connection = await session.connection()
    row = (await connection.execute(_CLAIM, {"scope": scope, "key": key})).one()
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
    connection = await (await session.connection()).get_raw_connection()
    raw: asyncpg.Connection = connection.driver_connection
    headers = json.dumps(answer.headers)
    await raw.execute(_SAVE, scope, key, fingerprint, answer.status, headers, answer.body, keep)


async def prune_expired(session: AsyncSession) -> int:
    """Deletes the expired records (index on `expires_at`); how many there were."""
    expired = delete(IdempotencyRecord).where(IdempotencyRecord.expires_at <= func.now())
    deleted: CursorResult[Any] = await session.execute(expired)  # type: ignore[assignment]
    return deleted.rowcount
