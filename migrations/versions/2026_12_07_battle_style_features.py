"""battle: each side's style (FastChat's conv_metadata), for style-controlled ratings

Revision ID: 8defcca922af
Revises: 00f110147861
Create Date: 2026-12-07 04:00:05.796679
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "8defcca922af"
down_revision: str | Sequence[str] | None = "00f110147861"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The per-side sums the style-controlled fit reads (arena.models.Battle).
STYLE_COLUMNS = tuple(
    f"style_{side}_{element}" for side in "ab" for element in ("tokens", "headers", "lists", "bold")
)


def upgrade() -> None:
    # Battles stored before this revision keep NULL here: tokenising every stored answer inside
    # a migration would hold the upgrade for minutes on a large arena. `arena battles
    # backfill-style` fills them in batches, and the recompute fills any voted one it meets.
    with op.batch_alter_table("battle", schema=None) as batch_op:
        batch_op.add_column(sa.Column("conv_metadata", sa.JSON(none_as_null=True), nullable=True))
        for column in STYLE_COLUMNS:
            batch_op.add_column(sa.Column(column, sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("battle", schema=None) as batch_op:
        for column in reversed(STYLE_COLUMNS):
            batch_op.drop_column(column)
        batch_op.drop_column("conv_metadata")
