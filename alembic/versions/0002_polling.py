"""polling: hosts, entry keys (tombstones), redirect and identity state on feeds

Revision ID: 0002_polling
Revises: 0001
Create Date: 2026-11-21 15:00:00
"""

from collections.abc import Sequence
from urllib.parse import urlsplit

import sqlalchemy as sa

import monitor.db.models
from alembic import op

revision: str = "0002_polling"
down_revision: str | None = "0001"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("feeds", schema=None) as batch_op:
        batch_op.add_column(sa.Column("host", sa.String(length=255), nullable=False,
                                      server_default=""))
        batch_op.add_column(sa.Column("original_url", sa.String(length=2048), nullable=True))
        batch_op.add_column(sa.Column("redirect_candidate", sa.String(length=2048),
                                      nullable=True))
        batch_op.add_column(sa.Column("redirect_seen", sa.Integer(), nullable=False,
                                      server_default="0"))
        batch_op.add_column(sa.Column("poll_interval", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("identity_level", sa.Integer(), nullable=False,
                                      server_default="0"))
        batch_op.add_column(sa.Column("identity_strikes", sa.Integer(), nullable=False,
                                      server_default="0"))
        batch_op.create_index(batch_op.f("ix_feeds_host"), ["host"], unique=False)

    op.create_table(
        "hosts",
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("retry_after_until", monitor.db.models.UtcDateTime(timezone=True),
                  nullable=True),
        sa.Column("last_status", sa.Integer(), nullable=True),
        sa.Column("updated_at", monitor.db.models.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("host"),
    )
    op.create_table(
        "entry_keys",
        sa.Column("id", _ID, nullable=False),
        sa.Column("feed_id", _ID, nullable=False),
        sa.Column("key", sa.String(length=300), nullable=False),
        sa.Column("entry_id", _ID, nullable=True),
        sa.Column("ambiguous", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["entry_id"], ["entries.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["feed_id"], ["feeds.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("feed_id", "key", name="uq_entry_keys_feed_key"),
    )
    with op.batch_alter_table("entry_keys", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_entry_keys_entry_id"), ["entry_id"], unique=False)

    # Existing entries keep their identity; existing feeds get their host.
    conn = op.get_bind()
    conn.execute(sa.text("INSERT INTO entry_keys (feed_id, key, entry_id, ambiguous) "
                         "SELECT feed_id, entry_key, id, false FROM entries"))
    for feed_id, url in conn.execute(sa.text("SELECT id, url FROM feeds")).all():
        conn.execute(sa.text("UPDATE feeds SET host = :h WHERE id = :i"),
                     {"h": (urlsplit(url).hostname or "").lower()[:255], "i": feed_id})


def downgrade() -> None:
    with op.batch_alter_table("entry_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_entry_keys_entry_id"))
    op.drop_table("entry_keys")
    op.drop_table("hosts")
    with op.batch_alter_table("feeds", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_feeds_host"))
        for column in ("identity_strikes", "identity_level", "poll_interval", "redirect_seen",
                       "redirect_candidate", "original_url", "host"):
            batch_op.drop_column(column)
