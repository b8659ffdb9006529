"""chat_image: the images attached to the prompts of direct chats.

Revision ID: 3b7e0c52d1a9
Revises: cd0a57cf8e45
Create Date: 2026-12-08 09:12:05.418220
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "3b7e0c52d1a9"
down_revision: str | Sequence[str] | None = "cd0a57cf8e45"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "chat_image",
        sa.Column("chat_id", sa.String(length=43), nullable=False),
        sa.Column("turn", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("image_sha256", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["chat_id"], ["chat.id"], name=op.f("fk_chat_image_chat_id_chat"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["image_sha256"], ["image.sha256"], name=op.f("fk_chat_image_image_sha256_image")
        ),
        sa.PrimaryKeyConstraint("chat_id", "turn", "position", name=op.f("pk_chat_image")),
    )
    with op.batch_alter_table("chat_image", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_chat_image_image_sha256"), ["image_sha256"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("chat_image", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_chat_image_image_sha256"))

    op.drop_table("chat_image")
