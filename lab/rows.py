"""The bench's own table and row shape, shared by `lab/stack_app.py` and `lab/bare_app.py`.

The same columns as the example domain's items, on a table of its own, so `make bench` runs the
same in a service generated without the example.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict
from sqlalchemy import BigInteger, Column, DateTime, MetaData, String, Table, Text

ROWS = Table(
    "bench_rows",
    MetaData(),
    Column("id", BigInteger, primary_key=True),
    Column("name", String(200), nullable=False),
    Column("description", Text),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)
CREATE = (
    "CREATE TABLE bench_rows (id bigint PRIMARY KEY, name varchar(200) NOT NULL,"
    " description text, created_at timestamptz NOT NULL DEFAULT now(),"
    " updated_at timestamptz NOT NULL DEFAULT now());"
    " INSERT INTO bench_rows (id, name, description) VALUES (1, 'bench', 'one row')"
)
SQL = "SELECT id, name, description, created_at, updated_at FROM bench_rows WHERE id = $1"


class RowPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    description: str | None
    created_at: datetime
    updated_at: datetime
