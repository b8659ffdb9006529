"""battle integrity flags

Revision ID: 1e9221cf9ce7
Revises: 4b64e170edd1
Create Date: 2026-11-29 02:35:32.555495
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "1e9221cf9ce7"
down_revision: str | Sequence[str] | None = "4b64e170edd1"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("battle", schema=None) as batch_op:
        batch_op.add_column(sa.Column("flags", sa.JSON(), server_default="[]", nullable=False))
        batch_op.add_column(
            sa.Column("answer_chars", sa.Integer(), server_default="0", nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("battle", schema=None) as batch_op:
        batch_op.drop_column("answer_chars")
        batch_op.drop_column("flags")
