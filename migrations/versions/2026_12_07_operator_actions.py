"""The audit log: operator_action, one row per action of an operator.

Revision ID: 1bd728b515ad
Revises: 7c3f5a91d2e4
Create Date: 2026-12-07 01:24:35.817309
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import arena.models

revision: str = "1bd728b515ad"
down_revision: str | Sequence[str] | None = "7c3f5a91d2e4"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "operator_action",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("created_at", arena.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=100), nullable=False),
        sa.Column("action", sa.String(length=40), nullable=False),
        sa.Column("target", sa.String(length=320), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_operator_action")),
    )
    with op.batch_alter_table("operator_action", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_operator_action_created_at"), ["created_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("operator_action", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_operator_action_created_at"))

    op.drop_table("operator_action")
