"""worker instances, and the worker streaming each battle's turn

Revision ID: 7c3f5a91d2e4
Revises: 1e9221cf9ce7
Create Date: 2026-12-06 22:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import arena.models

revision: str = "7c3f5a91d2e4"
down_revision: str | Sequence[str] | None = "1e9221cf9ce7"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "worker_instance",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started_at", arena.models.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_worker_instance")),
    )
    with op.batch_alter_table("battle", schema=None) as batch_op:
        batch_op.add_column(sa.Column("streamed_by", sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("battle", schema=None) as batch_op:
        batch_op.drop_column("streamed_by")
    op.drop_table("worker_instance")
