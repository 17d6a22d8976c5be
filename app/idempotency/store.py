"""Claiming a key and keeping its answer, on the request's own session and transaction.

`claim` takes a transaction-level advisory lock on (scope, key): it is released when the
transaction ends however it ends (commit, rollback, a killed worker's dropped connection), so a
key is never left stuck. Holding it, `find` tells a finished request (a committed row) from a
new one, and `save` writes the answer, committed together with the request's writes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncSession

from app.idempotency.models import IdempotencyRecord

# One 64-bit lock id per (scope, key); the scope's length first, so no two pairs give the same
# text before hashing.
_TRY_LOCK = text(
    "SELECT pg_try_advisory_xact_lock(hashtextextended("
    "format('%s:%s%s', length(CAST(:scope AS text)), CAST(:scope AS text), CAST(:key AS text)),"
    " 0))"
)


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes


async def claim(session: AsyncSession, scope: str, key: str) -> bool:
    """False while another transaction holds the key (its request is still running)."""
    return bool(await session.scalar(_TRY_LOCK, {"scope": scope, "key": key}))


async def find(session: AsyncSession, scope: str, key: str) -> IdempotencyRecord | None:
    """The unexpired record of a finished request with this key, if any."""
    query = select(IdempotencyRecord).where(
        IdempotencyRecord.scope == scope,
        IdempotencyRecord.key == key,
        IdempotencyRecord.expires_at > func.now(),
    )
    return await session.scalar(query)


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
        "created_at": func.now(),
        "expires_at": func.now() + keep,
    }
    statement = insert(IdempotencyRecord).values(values)
    replace = {name: statement.excluded[name] for name in values if name not in ("scope", "key")}
    await session.execute(
        statement.on_conflict_do_update(index_elements=["scope", "key"], set_=replace)
    )


async def prune_expired(session: AsyncSession) -> int:
    """Deletes the expired records (index on `expires_at`); how many there were."""
    expired = delete(IdempotencyRecord).where(IdempotencyRecord.expires_at <= func.now())
    deleted: CursorResult[Any] = await session.execute(expired)  # type: ignore[assignment]
    return deleted.rowcount
