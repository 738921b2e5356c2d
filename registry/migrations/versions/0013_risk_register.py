"""risk register: matrices and their levels as data, categories with an appetite, risks, their controls and key
risk indicators, assessments, re-scores asked, acceptances

New tables only. The default 5×5 matrix (likelihood Rare … Almost certain, impact Insignificant … Severe) and its
levels Low / Medium / High / Critical, with their colours and review cadences, are rows written here: another
matrix is an insert, not a code change. A downgrade drops the tables and, on PostgreSQL, their enums.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-01 15:40:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = '0013'
down_revision: str | None = '0012'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TREATMENT = sa.Enum('reduce', 'accept', 'avoid', 'transfer', name='treatment')
ACCEPTANCE_STATUS = sa.Enum('pending', 'accepted', 'treating', 'voided', 'expired', name='acceptancestatus')

LIKELIHOODS = ['Rare', 'Unlikely', 'Possible', 'Likely', 'Almost certain']
IMPACTS = ['Insignificant', 'Minor', 'Moderate', 'Major', 'Severe']
# The usual likelihood × impact bands: up to 4 Low, 5–9 Medium, 10–16 High, 20 and 25 Critical.
CELLS = [
    ['Low', 'Low', 'Low', 'Low', 'Medium'],
    ['Low', 'Low', 'Medium', 'Medium', 'High'],
    ['Low', 'Medium', 'Medium', 'High', 'High'],
    ['Low', 'Medium', 'High', 'High', 'Critical'],
    ['Medium', 'High', 'High', 'Critical', 'Critical'],
]
LEVELS = [
    # name, rank, colour, review cadence: a Critical risk monthly, High quarterly, Medium half-yearly, Low yearly
    ('Low', 1, '#2e7d32', '0 9 1 1 *'),
    ('Medium', 2, '#f9a825', '0 9 1 1,7 *'),
    ('High', 3, '#ef6c00', '0 9 1 1,4,7,10 *'),
    ('Critical', 4, '#c62828', '0 9 1 * *'),
]


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == 'postgresql':
        TREATMENT.create(bind, checkfirst=True)
        ACCEPTANCE_STATUS.create(bind, checkfirst=True)
    op.create_table('risk_category',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('code', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('appetite', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('description', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('risk_category', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_risk_category_code'), ['code'], unique=True)

    op.create_table('risk_matrix',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('code', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('likelihoods', sa.JSON(), nullable=False),
    sa.Column('impacts', sa.JSON(), nullable=False),
    sa.Column('cells', sa.JSON(), nullable=False),
    sa.Column('is_default', sa.Boolean(), nullable=False),
    sa.Column('description', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('risk_matrix', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_risk_matrix_code'), ['code'], unique=True)

    op.create_table('risk_level',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('matrix_id', sa.Integer(), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('rank', sa.Integer(), nullable=False),
    sa.Column('colour', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('review_cadence', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.ForeignKeyConstraint(['matrix_id'], ['risk_matrix.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('matrix_id', 'name'),
    sa.UniqueConstraint('matrix_id', 'rank')
    )
    with op.batch_alter_table('risk_level', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_risk_level_matrix_id'), ['matrix_id'], unique=False)

    op.create_table('risk',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('code', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('title', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('category_id', sa.Integer(), nullable=False),
    sa.Column('owner_id', sa.Integer(), nullable=False),
    sa.Column('cause', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('event', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('consequence', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('matrix_id', sa.Integer(), nullable=False),
    sa.Column('inherent_likelihood', sa.Integer(), nullable=False),
    sa.Column('inherent_impact', sa.Integer(), nullable=False),
    sa.Column('residual_likelihood', sa.Integer(), nullable=False),
    sa.Column('residual_impact', sa.Integer(), nullable=False),
    sa.Column('treatment', sa.Enum('reduce', 'accept', 'avoid', 'transfer', name='treatment', create_type=False),
              nullable=False),
    sa.Column('treatment_plan', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('last_reviewed_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('next_review_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['category_id'], ['risk_category.id'], ),
    sa.ForeignKeyConstraint(['matrix_id'], ['risk_matrix.id'], ),
    sa.ForeignKeyConstraint(['owner_id'], ['person.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('risk', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_risk_category_id'), ['category_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_risk_code'), ['code'], unique=True)
        batch_op.create_index('ix_risk_due', ['active', 'next_review_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_risk_owner_id'), ['owner_id'], unique=False)

    op.create_table('risk_assessment',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('risk_id', sa.Integer(), nullable=False),
    sa.Column('inherent_likelihood', sa.Integer(), nullable=False),
    sa.Column('inherent_impact', sa.Integer(), nullable=False),
    sa.Column('residual_likelihood', sa.Integer(), nullable=False),
    sa.Column('residual_impact', sa.Integer(), nullable=False),
    sa.Column('inherent_level', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('residual_level', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('rationale', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('reason', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('step_id', sa.Integer(), nullable=True),
    sa.Column('assessed_by_id', sa.Integer(), nullable=True),
    sa.Column('assessed_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('changed', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['assessed_by_id'], ['person.id'], ),
    sa.ForeignKeyConstraint(['risk_id'], ['risk.id'], ),
    sa.ForeignKeyConstraint(['step_id'], ['human_step.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('step_id')
    )
    with op.batch_alter_table('risk_assessment', schema=None) as batch_op:
        batch_op.create_index('ix_risk_assessment_risk', ['risk_id', 'id'], unique=False)

    op.create_table('risk_control',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('risk_id', sa.Integer(), nullable=False),
    sa.Column('control_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['control_id'], ['control.id'], ),
    sa.ForeignKeyConstraint(['risk_id'], ['risk.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('risk_id', 'control_id')
    )
    with op.batch_alter_table('risk_control', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_risk_control_control_id'), ['control_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_risk_control_risk_id'), ['risk_id'], unique=False)

    op.create_table('risk_indicator',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('risk_id', sa.Integer(), nullable=False),
    sa.Column('kpi_id', sa.Integer(), nullable=False),
    sa.Column('threshold', sa.Float(), nullable=False),
    sa.Column('breach_when', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('last_breach_measurement_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['kpi_id'], ['kpi_definition.id'], ),
    sa.ForeignKeyConstraint(['last_breach_measurement_id'], ['kpi_measurement.id'], ),
    sa.ForeignKeyConstraint(['risk_id'], ['risk.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('risk_id', 'kpi_id')
    )
    with op.batch_alter_table('risk_indicator', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_risk_indicator_kpi_id'), ['kpi_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_risk_indicator_risk_id'), ['risk_id'], unique=False)

    op.create_table('risk_acceptance',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('risk_id', sa.Integer(), nullable=False),
    sa.Column('assessment_id', sa.Integer(), nullable=False),
    sa.Column('key', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('occasion_id', sa.Integer(), nullable=True),
    sa.Column('step_id', sa.Integer(), nullable=True),
    sa.Column('status', sa.Enum('pending', 'accepted', 'treating', 'voided', 'expired', name='acceptancestatus',
                              create_type=False), nullable=False),
    sa.Column('decision', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('accepted_until', sa.Date(), nullable=True),
    sa.Column('justification', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('action', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('action_owner_id', sa.Integer(), nullable=True),
    sa.Column('finding_id', sa.Integer(), nullable=True),
    sa.Column('decided_by_id', sa.Integer(), nullable=True),
    sa.Column('decided_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('voided_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('void_reason', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['action_owner_id'], ['person.id'], ),
    sa.ForeignKeyConstraint(['assessment_id'], ['risk_assessment.id'], ),
    sa.ForeignKeyConstraint(['decided_by_id'], ['person.id'], ),
    sa.ForeignKeyConstraint(['finding_id'], ['finding.id'], ),
    sa.ForeignKeyConstraint(['occasion_id'], ['occasion.id'], ),
    sa.ForeignKeyConstraint(['risk_id'], ['risk.id'], ),
    sa.ForeignKeyConstraint(['step_id'], ['human_step.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('key')
    )
    with op.batch_alter_table('risk_acceptance', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_risk_acceptance_assessment_id'), ['assessment_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_risk_acceptance_occasion_id'), ['occasion_id'], unique=False)
        batch_op.create_index('ix_risk_acceptance_risk_status', ['risk_id', 'status'], unique=False)

    op.create_table('risk_rescore',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('risk_id', sa.Integer(), nullable=False),
    sa.Column('occasion_id', sa.Integer(), nullable=True),
    sa.Column('key', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('reason', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('measurement_id', sa.Integer(), nullable=True),
    sa.Column('acceptance_id', sa.Integer(), nullable=True),
    sa.Column('step_id', sa.Integer(), nullable=True),
    sa.Column('assessment_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['acceptance_id'], ['risk_acceptance.id'], ),
    sa.ForeignKeyConstraint(['assessment_id'], ['risk_assessment.id'], ),
    sa.ForeignKeyConstraint(['measurement_id'], ['kpi_measurement.id'], ),
    sa.ForeignKeyConstraint(['occasion_id'], ['occasion.id'], ),
    sa.ForeignKeyConstraint(['risk_id'], ['risk.id'], ),
    sa.ForeignKeyConstraint(['step_id'], ['human_step.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('risk_rescore', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_risk_rescore_key'), ['key'], unique=True)
        batch_op.create_index(batch_op.f('ix_risk_rescore_occasion_id'), ['occasion_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_risk_rescore_risk_id'), ['risk_id'], unique=False)

    matrix = sa.table('risk_matrix', sa.column('id', sa.Integer()), sa.column('code', sa.String()),
                      sa.column('name', sa.String()), sa.column('likelihoods', sa.JSON()),
                      sa.column('impacts', sa.JSON()), sa.column('cells', sa.JSON()),
                      sa.column('is_default', sa.Boolean()), sa.column('description', sa.String()))
    level = sa.table('risk_level', sa.column('matrix_id', sa.Integer()), sa.column('name', sa.String()),
                     sa.column('rank', sa.Integer()), sa.column('colour', sa.String()),
                     sa.column('review_cadence', sa.String()))
    matrix_id = bind.execute(sa.insert(matrix).values(
        code='5x5', name='5 × 5 likelihood and impact', likelihoods=LIKELIHOODS, impacts=IMPACTS, cells=CELLS,
        is_default=True, description='The default matrix: five likelihoods by five impacts, four levels.')
        .returning(matrix.c.id)).scalar_one()
    bind.execute(sa.insert(level), [{'matrix_id': matrix_id, 'name': name, 'rank': rank, 'colour': colour,
                                     'review_cadence': cadence} for name, rank, colour, cadence in LEVELS])


def downgrade() -> None:
    for table in ('risk_rescore', 'risk_acceptance', 'risk_indicator', 'risk_control', 'risk_assessment', 'risk',
                  'risk_level', 'risk_matrix', 'risk_category'):
        op.drop_table(table)  # its indexes go with it
    if op.get_bind().dialect.name == 'postgresql':
        ACCEPTANCE_STATUS.drop(op.get_bind(), checkfirst=True)
        TREATMENT.drop(op.get_bind(), checkfirst=True)
