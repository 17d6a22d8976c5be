"""The example's background job: a new item is published moments after it is created.

It shows the rules every job here follows. The job is enqueued in the request's transaction
(`ItemService.create`), so it exists if and only if the item does. It may run more than once (a
worker killed mid-job, a retry after a failed commit), so running it again changes nothing: the
update applies only to an item not yet published. Its payload is a versioned model holding ids,
not copies of rows: the job reads the current state when it runs.
"""

from __future__ import annotations

from pydantic import BaseModel
from sqlalchemy import func, update

from app.items.models import Item
from app.jobs.definitions import Job, JobContext


class PublishItem(BaseModel):
    item_id: int


async def publish(payload: PublishItem, context: JobContext) -> None:
    await context.session.execute(
        update(Item)
        .where(Item.id == payload.item_id, Item.published_at.is_(None))
        .values(published_at=func.now())
    )


PUBLISH = Job("items.publish", PublishItem, publish, version=1, timeout_seconds=30)
JOBS = [PUBLISH]
