"""The service as `make bench` serves it: `create_app()` plus one read on a bench-only table.

The route reads a row the way a domain does (`DbSession`, a Core `select()` built once, the
row validated into a response model), on a table of its own, so the benchmark runs the same in
a service generated without the example domain. Served like the service:
`gunicorn -c gunicorn_conf.py lab.stack_app:app`.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path
from sqlalchemy import bindparam, select

from app.auth.dependency import requires
from app.db.base import BIGINT_MAX
from app.db.session import DbSession
from app.factory import add_routes, create_app
from lab.rows import ROWS, RowPublic

_BY_ID = select(*ROWS.c).where(ROWS.c.id == bindparam("row_id"))


router = APIRouter(prefix="/bench/rows")


# With AUTH__MODE=oidc (the bench's token row) a token with this scope; none needed otherwise.
@router.get("/{row_id}", dependencies=[requires("bench:read")])
async def get_row(
    row_id: Annotated[int, Path(ge=1, le=BIGINT_MAX)], session: DbSession
) -> RowPublic:
    row = (await session.execute(_BY_ID, {"row_id": row_id})).one_or_none()
    if row is None:
        raise HTTPException(404)
    return RowPublic.model_validate(row)


app = create_app()
add_routes(app, router)
