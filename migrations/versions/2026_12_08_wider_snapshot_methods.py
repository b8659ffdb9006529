"""Wider rating_snapshot.method: room for bt-style-bootstrap.

Revision ID: 7a4f9d21c6e3
Revises: 5c1d7e2a9b40
Create Date: 2026-12-07 08:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "7a4f9d21c6e3"
down_revision: str | Sequence[str] | None = "5c1d7e2a9b40"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("rating_snapshot", schema=None) as batch_op:
        batch_op.alter_column(
            "method",
            existing_type=sa.String(length=16),
            type_=sa.String(length=32),
            existing_nullable=False,
        )


def downgrade() -> None:
    # Tables of the longer method names cannot be kept in the narrower column.
    op.execute("DELETE FROM rating_snapshot WHERE length(method) > 16")
    with op.batch_alter_table("rating_snapshot", schema=None) as batch_op:
        batch_op.alter_column(
            "method",
            existing_type=sa.String(length=32),
            type_=sa.String(length=16),
            existing_nullable=False,
        )
