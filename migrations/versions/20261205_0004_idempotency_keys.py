"""idempotency keys: the stored answers of requests made with an Idempotency-Key

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# One round trip per keyed request, whatever it finds (app/idempotency/store.py). Each statement
# of a VOLATILE function sees what committed before it (READ COMMITTED), so the second look, made
# holding the key, sees the answer of a request that finished since the first.
CLAIM = """
CREATE FUNCTION idempotency_claim(p_scope text, p_key text)
RETURNS TABLE (claimed boolean, fingerprint bytea, status smallint, headers jsonb, body bytea)
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
  -- A finished request's answer is final until it expires: replayed without the lock.
  RETURN QUERY SELECT true, k.fingerprint, k.status, k.headers, k.body FROM idempotency_keys k
    WHERE k.scope = p_scope AND k.key = p_key AND k.expires_at > now();
  IF FOUND THEN
    RETURN;
  END IF;
  -- Held until this transaction ends, however it ends; the scope's length keeps pairs apart.
  IF NOT pg_try_advisory_xact_lock(
      hashtextextended(format('%s:%s%s', length(p_scope), p_scope, p_key), 0)) THEN
    RETURN QUERY SELECT false, NULL::bytea, NULL::smallint, NULL::jsonb, NULL::bytea;
    RETURN;
  END IF;
  RETURN QUERY SELECT true, k.fingerprint, k.status, k.headers, k.body FROM idempotency_keys k
    WHERE k.scope = p_scope AND k.key = p_key AND k.expires_at > now();
  IF NOT FOUND THEN
    RETURN QUERY SELECT true, NULL::bytea, NULL::smallint, NULL::jsonb, NULL::bytea;
  END IF;
END
$$
"""


def upgrade() -> None:
    op.create_table(
        "idempotency_keys",
        sa.Column("scope", sa.String(length=255), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("fingerprint", sa.LargeBinary(), nullable=False),
        sa.Column("status", sa.SmallInteger(), nullable=False),
        sa.Column("headers", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("scope", "key", name=op.f("pk_idempotency_keys")),
    )
    op.create_index(
        op.f("ix_idempotency_keys_expires_at"), "idempotency_keys", ["expires_at"], unique=False
    )
    op.execute(CLAIM)


def downgrade() -> None:
    op.execute("DROP FUNCTION idempotency_claim(text, text)")
    op.drop_index(op.f("ix_idempotency_keys_expires_at"), table_name="idempotency_keys")
    op.drop_table("idempotency_keys")
