"""leased feeds: a partial index of the fetches under way, counted per host by every claim

Revision ID: 0008_leased_feeds
Revises: 0007_database_id
Create Date: 2026-11-21
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0008_leased_feeds"
down_revision: str | None = "0007_database_id"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None

LEASED = sa.text("lease_expires_at IS NOT NULL")


def upgrade() -> None:
    op.create_index("ix_feeds_leased", "feeds", ["host", "lease_expires_at"], unique=False,
                    sqlite_where=LEASED, postgresql_where=LEASED)


def downgrade() -> None:
    op.drop_index("ix_feeds_leased", table_name="feeds")
