"""battle: when the release notice was shown, and when its texts were erased

Revision ID: 5d1c8e2f9a47
Revises: a5d4a3b6838b
Create Date: 2026-12-07 01:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import arena.models

revision: str = "5d1c8e2f9a47"
down_revision: str | Sequence[str] | None = "a5d4a3b6838b"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Battles from before this revision have no notice_shown_at: none of their texts is ever
    # released, since no notice told their visitors it might be.
    with op.batch_alter_table("battle", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("notice_shown_at", arena.models.UTCDateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(
            sa.Column("erased_at", arena.models.UTCDateTime(timezone=True), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("battle", schema=None) as batch_op:
        batch_op.drop_column("erased_at")
        batch_op.drop_column("notice_shown_at")
