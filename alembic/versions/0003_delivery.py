"""delivery: dead-letter bookkeeping and per-alert notifier threads

Revision ID: 0003_delivery
Revises: 0002_polling
"""

from collections.abc import Sequence

import sqlalchemy as sa

import monitor.db.models
from alembic import op

revision: str = "0003_delivery"
down_revision: str | None = "0002_polling"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("dead_at", monitor.db.models.UtcDateTime(timezone=True),
                                      nullable=True))
        batch_op.add_column(sa.Column("requeued_at",
                                      monitor.db.models.UtcDateTime(timezone=True),
                                      nullable=True))
    op.create_table(
        "alert_threads",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("alert_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
                  nullable=False),
        sa.Column("notifier", sa.String(length=100), nullable=False),
        sa.Column("channel", sa.String(length=100), nullable=False),
        sa.Column("ts", sa.String(length=50), nullable=False),
        sa.Column("created_at", monitor.db.models.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["alert_id"], ["alerts.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("alert_id", "notifier", name="uq_alert_threads_notifier"),
    )


def downgrade() -> None:
    op.drop_table("alert_threads")
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_column("requeued_at")
        batch_op.drop_column("dead_at")
