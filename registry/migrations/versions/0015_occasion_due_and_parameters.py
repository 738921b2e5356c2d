"""occasion: its deadline and the parameters of the run that opened it

A process read its deadline back from its steps (the budget variance) or recomputed it from the opening time
and a window it was given again (the risk review); the occasion now holds it, with the run's parameters. An
occasion opened before stays without them (NULL), and its process falls back to what it did before.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-01 17:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = '0015'
down_revision: str | None = '0014'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('occasion', schema=None) as batch_op:
        batch_op.add_column(sa.Column('due_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column('parameters', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('occasion', schema=None) as batch_op:
        batch_op.drop_column('parameters')
        batch_op.drop_column('due_at')
