"""flagged_session: the operator's decision (confirmed or dismissed), its time and note.

Revision ID: 90f2bc92025d
Revises: 5d1c8e2f9a47
Create Date: 2026-12-07 02:05:51.466487
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import arena.models

revision: str = "90f2bc92025d"
down_revision: str | Sequence[str] | None = "5d1c8e2f9a47"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("flagged_session", schema=None) as batch_op:
        batch_op.add_column(sa.Column("decision", sa.String(length=16), nullable=True))
        batch_op.add_column(
            sa.Column("decided_at", arena.models.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(
            sa.Column("decision_note", sa.Text(), nullable=False, server_default="")
        )


def downgrade() -> None:
    with op.batch_alter_table("flagged_session", schema=None) as batch_op:
        batch_op.drop_column("decision_note")
        batch_op.drop_column("decided_at")
        batch_op.drop_column("decision")
