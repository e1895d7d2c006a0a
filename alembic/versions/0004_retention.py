"""retention: entry tombstones and the indexes pruning walks

Revision ID: 0004_retention
Revises: 0003_delivery
"""

from collections.abc import Sequence

import sqlalchemy as sa

import monitor.db.models
from alembic import op

revision: str = "0004_retention"
down_revision: str | None = "0003_delivery"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("entries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("tombstone_seen_at",
                                      monitor.db.models.UtcDateTime(timezone=True),
                                      nullable=True))
        batch_op.create_index(batch_op.f("ix_entries_fetched_at"), ["fetched_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_entries_tombstone_seen_at"), ["tombstone_seen_at"],
                              unique=False)
    with op.batch_alter_table("stories", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_stories_updated_at"), ["updated_at"], unique=False)
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_alerts_story_id"), ["story_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_alerts_story_id"))
    with op.batch_alter_table("stories", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_stories_updated_at"))
    with op.batch_alter_table("entries", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_entries_tombstone_seen_at"))
        batch_op.drop_index(batch_op.f("ix_entries_fetched_at"))
        batch_op.drop_column("tombstone_seen_at")
