"""the outbox's undelivered, not yet alerted messages: a partial index for the sweep's alert claim

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 11:15:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_WHERE = 'alerted_at IS NULL AND last_error IS NOT NULL'


def upgrade() -> None:
    with op.batch_alter_table('notification', schema=None) as batch_op:
        batch_op.create_index('ix_notification_undelivered', ['status', 'created_at'], unique=False,
                              sqlite_where=sa.text(_WHERE), postgresql_where=sa.text(_WHERE))


def downgrade() -> None:
    with op.batch_alter_table('notification', schema=None) as batch_op:
        batch_op.drop_index('ix_notification_undelivered', sqlite_where=sa.text(_WHERE),
                            postgresql_where=sa.text(_WHERE))
