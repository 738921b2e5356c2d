"""indexes for a year of data: the outbox's message key, one index per sweep query

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 10:50:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('notification', schema=None) as batch_op:
        batch_op.add_column(sa.Column('message_key', sqlmodel.sql.sqltypes.AutoString(), nullable=True))
    # Every row so far is keyed `<message key>#<channel>`.
    op.execute("UPDATE notification SET message_key = "
               "substr(idempotency_key, 1, length(idempotency_key) - length(CAST(channel AS TEXT)) - 1)")
    with op.batch_alter_table('notification', schema=None) as batch_op:
        batch_op.alter_column('message_key', existing_type=sqlmodel.sql.sqltypes.AutoString(), nullable=False)
        batch_op.create_index(batch_op.f('ix_notification_message_key'), ['message_key'], unique=False)

    with op.batch_alter_table('human_step', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_human_step_status'))
        batch_op.create_index('ix_human_step_reminder', ['status', 'reminded_at', 'due_at'], unique=False)
        batch_op.create_index('ix_human_step_escalation', ['status', 'escalation_level', 'due_at'], unique=False)
        batch_op.create_index('ix_human_step_expiry', ['status', 'expires_at'], unique=False)
        batch_op.create_index('ix_human_step_resume_pending', ['resume_pending', 'id'], unique=False,
                              sqlite_where=sa.text('resume_pending = 1'), postgresql_where=sa.text('resume_pending'))


def downgrade() -> None:
    with op.batch_alter_table('human_step', schema=None) as batch_op:
        batch_op.drop_index('ix_human_step_resume_pending', sqlite_where=sa.text('resume_pending = 1'),
                            postgresql_where=sa.text('resume_pending'))
        batch_op.drop_index('ix_human_step_expiry')
        batch_op.drop_index('ix_human_step_escalation')
        batch_op.drop_index('ix_human_step_reminder')
        batch_op.create_index(batch_op.f('ix_human_step_status'), ['status'], unique=False)

    with op.batch_alter_table('notification', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_notification_message_key'))
        batch_op.drop_column('message_key')
