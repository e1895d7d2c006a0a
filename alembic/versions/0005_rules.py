"""rules: alert groups, suppressions, silences

Revision ID: 0005_rules
Revises: 0004_retention
Create Date: 2026-11-21
"""

from collections.abc import Sequence

import sqlalchemy as sa

import monitor.db.models
from alembic import op

revision: str = "0005_rules"
down_revision: str | None = "0004_retention"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "silences",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("matchers", sa.JSON(), nullable=False),
        sa.Column("starts_at", monitor.db.models.UtcDateTime(timezone=True), nullable=False),
        sa.Column("ends_at", monitor.db.models.UtcDateTime(timezone=True), nullable=False),
        sa.Column("author", sa.String(length=200), nullable=False),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("created_at", monitor.db.models.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_silences")),
    )
    with op.batch_alter_table("silences", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_silences_ends_at"), ["ends_at"], unique=False)

    op.create_table(
        "suppressions",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("rule_id", sa.String(length=200), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("group_key", sa.String(length=500), nullable=False),
        sa.Column("reason", sa.String(length=30), nullable=False),
        sa.Column("event_at", monitor.db.models.UtcDateTime(timezone=True), nullable=False),
        sa.Column("created_at", monitor.db.models.UtcDateTime(timezone=True), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_suppressions")),
    )
    with op.batch_alter_table("suppressions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_suppressions_created_at"), ["created_at"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_suppressions_rule_id"), ["rule_id"], unique=False)

    with op.batch_alter_table("alerts", schema=None) as batch_op:
        # Existing alerts get empty values; new rows always set them.
        batch_op.add_column(
            sa.Column("group_labels", sa.JSON(), nullable=False, server_default=sa.text("'{}'"))
        )
        batch_op.add_column(
            sa.Column("story_ids", sa.JSON(), nullable=False, server_default=sa.text("'[]'"))
        )
        batch_op.add_column(
            sa.Column(
                "last_notified_at", monitor.db.models.UtcDateTime(timezone=True), nullable=True
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.drop_column("last_notified_at")
        batch_op.drop_column("story_ids")
        batch_op.drop_column("group_labels")

    with op.batch_alter_table("suppressions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_suppressions_rule_id"))
        batch_op.drop_index(batch_op.f("ix_suppressions_created_at"))

    op.drop_table("suppressions")
    with op.batch_alter_table("silences", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_silences_ends_at"))

    op.drop_table("silences")
