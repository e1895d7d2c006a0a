"""database id: a random id per database, so saved story index snapshots are not loaded elsewhere

Revision ID: 0007_database_id
Revises: 0006_story_stage
Create Date: 2026-11-21
"""

import uuid
from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0007_database_id"
down_revision: str | None = "0006_story_stage"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None


def upgrade() -> None:
    table = op.create_table(
        "database_info",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_database_info")))
    op.bulk_insert(table, [{"id": uuid.uuid4().hex}])


def downgrade() -> None:
    op.drop_table("database_info")
