"""Moderation refusals: moderation_refusal, one row per refused prompt or withheld turn.

Revision ID: 3ef5e86a558e
Revises: 90f2bc92025d
Create Date: 2026-12-07 03:59:24.120766
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import arena.models

revision: str = "3ef5e86a558e"
down_revision: str | Sequence[str] | None = "90f2bc92025d"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "moderation_refusal",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("created_at", arena.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("stage", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=64), nullable=False),
        sa.Column("battle_id", sa.String(length=43), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_moderation_refusal")),
    )
    with op.batch_alter_table("moderation_refusal", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_moderation_refusal_created_at"), ["created_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("moderation_refusal", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_moderation_refusal_created_at"))

    op.drop_table("moderation_refusal")
