"""purchase_request.order_not_sent_at: when the requester was told its order could not be sent

The purchase approval tells the requester once that an approved request's vendor has no order contact; it claims
that with one conditional UPDATE on this column and no longer scans the trail for an earlier note. A registry made
before it takes the time of each request's earlier note, so nobody is told twice.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01 13:05:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = '0010'
down_revision: str | None = '0009'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_NOTED = ("FROM audit_event WHERE audit_event.action = 'purchase_request.order_not_sent' "
          "AND audit_event.entity_type = 'purchase_request' AND audit_event.entity_id = purchase_request.id")


def upgrade() -> None:
    with op.batch_alter_table('purchase_request', schema=None) as batch_op:
        batch_op.add_column(sa.Column('order_not_sent_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
    op.execute(f"UPDATE purchase_request SET order_not_sent_at = (SELECT MIN(audit_event.at) {_NOTED}) "
               f"WHERE EXISTS (SELECT 1 {_NOTED})")


def downgrade() -> None:
    with op.batch_alter_table('purchase_request', schema=None) as batch_op:
        batch_op.drop_column('order_not_sent_at')
