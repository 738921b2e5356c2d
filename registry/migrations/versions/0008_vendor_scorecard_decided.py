"""vendor_scorecard.decided_at: when its change of standing was settled (approved, rejected, expired, cancelled)

The vendor review claims a decided change with one conditional UPDATE on this column, so the change is applied,
or its refusal recorded, once; it no longer scans the trail for an earlier record. A registry made before it marks
every change whose step is already decided as settled then (applied ones when they were applied), so nothing
is recorded again.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 13:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = '0008'
down_revision: str | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('vendor_scorecard', schema=None) as batch_op:
        batch_op.add_column(sa.Column('decided_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
    op.execute("UPDATE vendor_scorecard SET decided_at = COALESCE(applied_at, "
               "(SELECT COALESCE(human_step.answered_at, human_step.due_at) FROM human_step "
               " WHERE human_step.id = vendor_scorecard.step_id)) "
               "WHERE applied_at IS NOT NULL OR step_id IN "
               "(SELECT id FROM human_step WHERE status <> 'pending')")


def downgrade() -> None:
    with op.batch_alter_table('vendor_scorecard', schema=None) as batch_op:
        batch_op.drop_column('decided_at')
