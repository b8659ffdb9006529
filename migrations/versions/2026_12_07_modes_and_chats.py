"""battle.mode (anonymous | named); chat, chat_message, chat_feedback for direct chats.

Revision ID: 62abb4a02a35
Revises: 3ef5e86a558e
Create Date: 2026-12-07 03:58:40.160782
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import arena.models

revision: str = "62abb4a02a35"
down_revision: str | Sequence[str] | None = "3ef5e86a558e"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "chat",
        sa.Column("id", sa.String(length=43), nullable=False),
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("session_hash", sa.String(length=64), nullable=False),
        sa.Column("ip_hash", sa.String(length=64), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "pending",
                "streaming",
                "ready",
                "failed",
                "voted",
                name="chat_status",
                native_enum=False,
                create_constraint=True,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("turns", sa.Integer(), nullable=False),
        sa.Column("created_at", arena.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("stream_started_at", arena.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("streamed_by", sa.String(length=32), nullable=True),
        sa.ForeignKeyConstraint(["model_id"], ["model.id"], name=op.f("fk_chat_model_id_model")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_chat")),
    )
    with op.batch_alter_table("chat", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_chat_created_at"), ["created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_chat_model_id"), ["model_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_chat_session_hash"), ["session_hash"], unique=False)

    op.create_table(
        "chat_feedback",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("chat_id", sa.String(length=43), nullable=False),
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("turn", sa.Integer(), nullable=False),
        sa.Column(
            "rating",
            sa.Enum(
                "up", "down", name="feedback", native_enum=False, create_constraint=True, length=16
            ),
            nullable=False,
        ),
        sa.Column("created_at", arena.models.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["chat_id"], ["chat.id"], name=op.f("fk_chat_feedback_chat_id_chat"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["model_id"], ["model.id"], name=op.f("fk_chat_feedback_model_id_model")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_chat_feedback")),
        sa.UniqueConstraint("chat_id", "turn", name="one_per_answer"),
    )
    with op.batch_alter_table("chat_feedback", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_chat_feedback_model_id"), ["model_id"], unique=False)

    op.create_table(
        "chat_message",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("chat_id", sa.String(length=43), nullable=False),
        sa.Column("turn", sa.Integer(), nullable=False),
        sa.Column(
            "role",
            sa.Enum(
                "user",
                "assistant",
                name="chat_role",
                native_enum=False,
                create_constraint=True,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("finish_reason", sa.String(length=32), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("first_token_ms", sa.Float(), nullable=True),
        sa.Column("duration_ms", sa.Float(), nullable=True),
        sa.Column("created_at", arena.models.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["chat_id"], ["chat.id"], name=op.f("fk_chat_message_chat_id_chat"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_chat_message")),
        sa.UniqueConstraint("chat_id", "turn", "role", name="one_per_role_and_turn"),
    )
    with op.batch_alter_table("battle", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "mode",
                sa.Enum(
                    "anonymous",
                    "named",
                    name="battle_mode",
                    native_enum=False,
                    create_constraint=True,
                    length=16,
                ),
                server_default="anonymous",
                nullable=False,
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("battle", schema=None) as batch_op:
        batch_op.drop_column("mode")

    op.drop_table("chat_message")
    with op.batch_alter_table("chat_feedback", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_chat_feedback_model_id"))

    op.drop_table("chat_feedback")
    with op.batch_alter_table("chat", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_chat_session_hash"))
        batch_op.drop_index(batch_op.f("ix_chat_model_id"))
        batch_op.drop_index(batch_op.f("ix_chat_created_at"))

    op.drop_table("chat")
