from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, DateTime, Identity, String, Text, func
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base

NAME_MAX = 200
DESCRIPTION_MAX = 2000


class Item(Base):
    __tablename__ = "items"
    # The flush fetches server-set values (timestamps) with RETURNING, in the same round trip.
    __mapper_args__ = {"eager_defaults": True}  # noqa: RUF012 - SQLAlchemy's declarative form

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_MAX), unique=True)
    description: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )
    # Set by the background job that publishes a new item (app/items/jobs.py).
    published_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))  # jobs-only
