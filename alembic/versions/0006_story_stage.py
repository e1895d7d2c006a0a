"""story stage: an index of entries stored but not yet clustered

Revision ID: 0006_story_stage
Revises: 0005_rules
Create Date: 2026-11-21
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0006_story_stage"
down_revision: str | None = "0005_rules"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None

UNCLUSTERED = sa.text("story_id IS NULL AND tombstone_seen_at IS NULL")


def upgrade() -> None:
    op.create_index("ix_entries_unclustered", "entries", ["id"], unique=False,
                    sqlite_where=UNCLUSTERED, postgresql_where=UNCLUSTERED)


def downgrade() -> None:
    op.drop_index("ix_entries_unclustered", table_name="entries")
