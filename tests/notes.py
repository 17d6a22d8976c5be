"""A test-only table and routes, so the infrastructure tests (HTTP stack, faults, signals,
metrics, probes, PgBouncer) never depend on the example domain, which a service may leave out.

The table lives on its own metadata, never the service's: Alembic does not see it. The session
fixture creates it after migrating (`create_table`).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, HTTPException, Query, Response, status
from pydantic import BaseModel
from sqlalchemy import String, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from app.auth.dependency import requires
from app.db.session import DbSession
from app.idempotency.dependency import IdempotentRequired, IdempotentRoute
from devtools.pgcluster import APP_USER, PgCluster

PREFIX = "/_test/notes"


class NotesBase(DeclarativeBase):
    """Not the service's metadata."""


class Note(NotesBase):
    __tablename__ = "test_notes"

    id: Mapped[int] = mapped_column(primary_key=True)
    text: Mapped[str] = mapped_column(String(200), unique=True)


class NotePublic(BaseModel):
    id: int
    text: str


def create_table(cluster: PgCluster, database: str = "app") -> None:
    cluster.psql(
        "CREATE TABLE IF NOT EXISTS test_notes (id serial PRIMARY KEY, text varchar(200) UNIQUE"
        f" NOT NULL); ALTER TABLE test_notes OWNER TO {APP_USER}",
        database,
    )


router = APIRouter(prefix=PREFIX, route_class=IdempotentRoute)


@router.post("", status_code=status.HTTP_201_CREATED, dependencies=[requires("notes:write")])
async def create_note(text: Annotated[str, Body(embed=True)], session: DbSession) -> NotePublic:
    note = Note(text=text)
    session.add(note)
    try:
        await session.flush()
    except IntegrityError:
        raise HTTPException(status.HTTP_409_CONFLICT, "A note with this text exists.") from None
    return NotePublic(id=note.id, text=note.text)


@router.post("/keyed", status_code=status.HTTP_201_CREATED, dependencies=[requires("notes:write")])
async def create_note_with_a_key(
    text: Annotated[str, Body(embed=True)],
    session: DbSession,
    response: Response,
    _: IdempotentRequired,
    padding: Annotated[int, Query(ge=0, le=100_000)] = 0,
) -> dict[str, str | int]:
    """A note, under a required `Idempotency-Key`; `padding` makes the answer that much longer."""
    note = await create_note(text, session)
    response.headers["Location"] = f"{PREFIX}/{note.id}"
    return {"id": note.id, "text": note.text, "padding": "x" * padding}


@router.get("", dependencies=[requires("notes:read")])
async def list_notes(session: DbSession) -> list[NotePublic]:
    rows = (await session.execute(select(Note.id, Note.text).order_by(Note.id).limit(100))).all()
    return [NotePublic(id=row.id, text=row.text) for row in rows]


@router.get("/{note_id}", dependencies=[requires("notes:read")])
async def get_note(note_id: int, session: DbSession) -> NotePublic:
    row = (await session.execute(select(Note.id, Note.text).where(Note.id == note_id))).first()
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"Note {note_id} does not exist.")
    return NotePublic(id=row.id, text=row.text)
