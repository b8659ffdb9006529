"""Withheld chat answers: chat_message.withheld, moderation_refusal.chat_id.

Revision ID: 5c1d7e2a9b40
Revises: 3b7e0c52d1a9
Create Date: 2026-12-08 09:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "5c1d7e2a9b40"
down_revision: str | Sequence[str] | None = "3b7e0c52d1a9"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("chat_message", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("withheld", sa.Boolean(), server_default=sa.false(), nullable=False)
        )

    with op.batch_alter_table("moderation_refusal", schema=None) as batch_op:
        batch_op.add_column(sa.Column("chat_id", sa.String(length=43), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("moderation_refusal", schema=None) as batch_op:
        batch_op.drop_column("chat_id")

    with op.batch_alter_table("chat_message", schema=None) as batch_op:
        batch_op.drop_column("withheld")
