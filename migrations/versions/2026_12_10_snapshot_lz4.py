"""LZ4 compression for the rating snapshots' JSON on PostgreSQL.

A recompute of a million votes writes about 40 MB of snapshot JSON; PostgreSQL's default
compression (pglz) spends about a second of it compressing, LZ4 a tenth of that. Servers built
without LZ4 keep pglz; SQLite has nothing to change. Older rows keep their compression.

Revision ID: 4d8a1f6c2e93
Revises: 9e2b6c4f1a07
Create Date: 2026-12-07 12:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "4d8a1f6c2e93"
down_revision: str | Sequence[str] | None = "9e2b6c4f1a07"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COLUMNS = ("rows", "extras")


def _lz4_available() -> bool:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return False
    # The settings list the compression methods this server was built with.
    return bool(
        bind.scalar(
            sa.text(
                "SELECT 'lz4' = ANY(enumvals) FROM pg_settings"
                " WHERE name = 'default_toast_compression'"
            )
        )
    )


def _set_compression(method: str) -> None:
    changes = ", ".join(f"ALTER COLUMN {column} SET COMPRESSION {method}" for column in _COLUMNS)
    op.execute(f"ALTER TABLE rating_snapshot {changes}")


def upgrade() -> None:
    if _lz4_available():
        _set_compression("lz4")


def downgrade() -> None:
    if _lz4_available():
        _set_compression("default")
