"""Owner webhooks: the URL and secret on owner, and the webhook_delivery outbox.

Revision ID: a5d4a3b6838b
Revises: 1bd728b515ad
Create Date: 2026-12-07 01:29:14.908614
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import arena.models

revision: str = "a5d4a3b6838b"
down_revision: str | Sequence[str] | None = "1bd728b515ad"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "webhook_delivery",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("owner_id", sa.Integer(), nullable=False),
        sa.Column("event", sa.String(length=32), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("created_at", arena.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", arena.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_attempt_at", arena.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("delivered_at", arena.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("given_up_at", arena.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["owner.id"], name=op.f("fk_webhook_delivery_owner_id_owner")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_delivery")),
    )
    with op.batch_alter_table("webhook_delivery", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_webhook_delivery_next_attempt_at"), ["next_attempt_at"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_webhook_delivery_owner_id"), ["owner_id"], unique=False
        )

    with op.batch_alter_table("owner", schema=None) as batch_op:
        batch_op.add_column(sa.Column("webhook_url", sa.String(length=2000), nullable=True))
        batch_op.add_column(sa.Column("webhook_secret", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("owner", schema=None) as batch_op:
        batch_op.drop_column("webhook_secret")
        batch_op.drop_column("webhook_url")

    with op.batch_alter_table("webhook_delivery", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_webhook_delivery_owner_id"))
        batch_op.drop_index(batch_op.f("ix_webhook_delivery_next_attempt_at"))

    op.drop_table("webhook_delivery")
