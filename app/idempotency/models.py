"""The stored answer of a request made with an `Idempotency-Key`
(docs/adr/0012-idempotency-keys.md)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, LargeBinary, SmallInteger, String, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base
from app.idempotency.keys import MAX_KEY_LENGTH


class IdempotencyRecord(Base):
    __tablename__ = "idempotency_keys"

    # Whose key: the token's subject (one shared scope with authentication off).
    scope: Mapped[str] = mapped_column(String(255), primary_key=True)
    key: Mapped[str] = mapped_column(String(MAX_KEY_LENGTH), primary_key=True)
    fingerprint: Mapped[bytes] = mapped_column(LargeBinary)
    status: Mapped[int] = mapped_column(SmallInteger)
    headers: Mapped[dict[str, str]] = mapped_column(JSONB)
    body: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
