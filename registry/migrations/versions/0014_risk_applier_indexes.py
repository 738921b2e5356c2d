"""the risk review's appliers: indexes for the sweep's catch-up of answers not yet applied

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-01 16:40:00
"""
from collections.abc import Sequence

from alembic import op

revision: str = '0014'
down_revision: str | None = '0013'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('risk_rescore', schema=None) as batch_op:
        batch_op.create_index('ix_risk_rescore_unapplied', ['assessment_id'], unique=False)
    with op.batch_alter_table('risk_acceptance', schema=None) as batch_op:
        batch_op.create_index('ix_risk_acceptance_status', ['status'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('risk_acceptance', schema=None) as batch_op:
        batch_op.drop_index('ix_risk_acceptance_status')
    with op.batch_alter_table('risk_rescore', schema=None) as batch_op:
        batch_op.drop_index('ix_risk_rescore_unapplied')
