"""Wire shapes: `ItemCreate`/`ItemUpdate` in, `ItemPublic`/`ItemPage` out."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from app.items.models import DESCRIPTION_MAX, NAME_MAX

# PostgreSQL text cannot hold NUL characters; reject them as input (422) rather than let the
# driver fail (500). Declared as a pattern, so the OpenAPI schema says so too.
NO_NUL = r"^[^\x00]*$"
Name = Annotated[str, StringConstraints(min_length=1, max_length=NAME_MAX, pattern=NO_NUL)]
Description = Annotated[str, Field(max_length=DESCRIPTION_MAX, pattern=NO_NUL)]

PAGE_SIZE_DEFAULT = 50
PAGE_SIZE_MAX = 100


class ItemCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name
    description: Description | None = None


class ItemUpdate(BaseModel):
    """Partial update: only the fields present in the body change."""

    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    description: Description | None = None


class ItemPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    description: str | None
    created_at: datetime
    updated_at: datetime
    # null until the background job has published the item, moments after it was created.
    published_at: datetime | None  # jobs-only


class ItemPage(BaseModel):
    items: list[ItemPublic]
    # Pass as `after` to get the next page; null on the last page.
    next_after: int | None
