"""budget: cost centres, budget lines in versions, actuals, explanations; vendors and purchase requests charged to
a cost centre and account

New tables only, and new columns that are empty (a vendor or request not yet charged anywhere): nothing to copy.
A downgrade drops them, and the line kind's enum on PostgreSQL.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-01 15:50:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = '0012'
down_revision: str | None = '0011'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LINE_KIND = sa.Enum('expense', 'income', name='linekind')


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == 'postgresql':
        LINE_KIND.create(bind, checkfirst=True)
    op.create_table('cost_centre',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('code', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('owner_id', sa.Integer(), nullable=False),
    sa.Column('manager_id', sa.Integer(), nullable=True),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['manager_id'], ['person.id'], ),
    sa.ForeignKeyConstraint(['owner_id'], ['person.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('cost_centre', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_cost_centre_code'), ['code'], unique=True)

    op.create_table('actual',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('cost_centre_id', sa.Integer(), nullable=False),
    sa.Column('account', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('booked_on', sa.Date(), nullable=False),
    sa.Column('amount', sa.Numeric(precision=14, scale=2), nullable=False),
    sa.Column('reference', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.ForeignKeyConstraint(['cost_centre_id'], ['cost_centre.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('reference', 'cost_centre_id', 'account', name='uq_actual_reference')
    )
    with op.batch_alter_table('actual', schema=None) as batch_op:
        batch_op.create_index('ix_actual_booked_on', ['booked_on'], unique=False)
        batch_op.create_index('ix_actual_cost_centre_booked_on', ['cost_centre_id', 'booked_on'], unique=False)

    op.create_table('budget_line',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('cost_centre_id', sa.Integer(), nullable=False),
    sa.Column('account', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('month', sa.Date(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('kind', sa.Enum('expense', 'income', name='linekind', create_type=False), nullable=False),
    sa.Column('amount', sa.Numeric(precision=14, scale=2), nullable=False),
    sa.Column('imported_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['cost_centre_id'], ['cost_centre.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('cost_centre_id', 'account', 'month', 'version', name='uq_budget_line_version')
    )
    with op.batch_alter_table('budget_line', schema=None) as batch_op:
        batch_op.create_index('ix_budget_line_month', ['month'], unique=False)

    op.create_table('budget_explanation',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('occasion_id', sa.Integer(), nullable=False),
    sa.Column('month', sa.Date(), nullable=False),
    sa.Column('cost_centre_id', sa.Integer(), nullable=False),
    sa.Column('account', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('variance', sa.Numeric(precision=14, scale=2), nullable=False),
    sa.Column('variance_pct', sa.Float(), nullable=True),
    sa.Column('step_id', sa.Integer(), nullable=True),
    sa.Column('finding_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['cost_centre_id'], ['cost_centre.id'], ),
    sa.ForeignKeyConstraint(['finding_id'], ['finding.id'], ),
    sa.ForeignKeyConstraint(['occasion_id'], ['occasion.id'], ),
    sa.ForeignKeyConstraint(['step_id'], ['human_step.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('month', 'cost_centre_id', 'account', name='uq_budget_explanation_line')
    )
    with op.batch_alter_table('budget_explanation', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_budget_explanation_occasion_id'), ['occasion_id'], unique=False)

    # Existing rows are charged nowhere yet: an empty account, then no default (the models give one).
    with op.batch_alter_table('purchase_request', schema=None) as batch_op:
        batch_op.add_column(sa.Column('cost_centre_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('account', sqlmodel.sql.sqltypes.AutoString(), nullable=False,
                                      server_default=''))
        batch_op.add_column(sa.Column('over_budget_amount', sa.Numeric(precision=14, scale=2), nullable=True))
        batch_op.add_column(sa.Column('over_budget_pct', sa.Float(), nullable=True))
        batch_op.add_column(sa.Column('budget_remaining', sa.Numeric(precision=14, scale=2), nullable=True))
        batch_op.create_index(batch_op.f('ix_purchase_request_cost_centre_id'), ['cost_centre_id'], unique=False)
        batch_op.create_foreign_key('fk_purchase_request_cost_centre_id', 'cost_centre', ['cost_centre_id'], ['id'])
    with op.batch_alter_table('vendor', schema=None) as batch_op:
        batch_op.add_column(sa.Column('cost_centre_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('account', sqlmodel.sql.sqltypes.AutoString(), nullable=False,
                                      server_default=''))
        batch_op.create_foreign_key('fk_vendor_cost_centre_id', 'cost_centre', ['cost_centre_id'], ['id'])
    for table in ('purchase_request', 'vendor'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.alter_column('account', existing_type=sqlmodel.sql.sqltypes.AutoString(), server_default=None,
                                  existing_nullable=False)


def downgrade() -> None:
    with op.batch_alter_table('vendor', schema=None) as batch_op:
        batch_op.drop_constraint('fk_vendor_cost_centre_id', type_='foreignkey')
        batch_op.drop_column('account')
        batch_op.drop_column('cost_centre_id')
    with op.batch_alter_table('purchase_request', schema=None) as batch_op:
        batch_op.drop_constraint('fk_purchase_request_cost_centre_id', type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_purchase_request_cost_centre_id'))
        batch_op.drop_column('budget_remaining')
        batch_op.drop_column('over_budget_pct')
        batch_op.drop_column('over_budget_amount')
        batch_op.drop_column('account')
        batch_op.drop_column('cost_centre_id')
    op.drop_table('budget_explanation')
    op.drop_table('budget_line')
    op.drop_table('actual')
    with op.batch_alter_table('cost_centre', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_cost_centre_code'))
    op.drop_table('cost_centre')
    if op.get_bind().dialect.name == 'postgresql':
        LINE_KIND.drop(op.get_bind(), checkfirst=True)
