"""The operations report's latency section reads the steps answered in its period through an index (answered_at first,
so the sweep's status-led indexes stay the planner's choice for their queries), not a year of steps

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-01 23:30:00
"""
from collections.abc import Sequence

from alembic import op

revision: str = '0017'
down_revision: str | None = '0016'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('human_step', schema=None) as batch_op:
        batch_op.create_index('ix_human_step_answered', ['answered_at', 'status'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('human_step', schema=None) as batch_op:
        batch_op.drop_index('ix_human_step_answered')
