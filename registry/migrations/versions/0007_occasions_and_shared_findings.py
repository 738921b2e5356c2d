"""occasions, and findings shared by every process: one origin reference, status enums, an action lifecycle

Every audit and drill gets its occasion; each finding's origin comes from the foreign key it had (a control test,
a drill, else its audit), its free-text status maps onto the enums; the old foreign keys go.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 12:45:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = '0007'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OCCASION_STATUS = sa.Enum('open', 'collecting', 'awaiting_signoff', 'changes_requested', 'closed', 'cancelled',
                          name='occasionstatus')
FINDING_STATUS = sa.Enum('open', 'closed', name='findingstatus')
ACTION_STATUS = sa.Enum('open', 'done', 'verified', 'reopened', name='actionstatus')

# What the old free-text statuses meant (the report guessed the same spellings).
_FINDING_CLOSED = "('closed', 'resolved', 'done', 'verified', 'cancelled', 'complete', 'completed')"
_ACTION_VERIFIED = "('verified', 'closed', 'cancelled')"
_ACTION_DONE = "('done', 'resolved', 'complete', 'completed')"


def _as(expression: str, enum: str) -> str:
    """A text value into an enum column: PostgreSQL wants the enum type named, SQLite stores the text."""
    return f"CAST({expression} AS {enum})" if op.get_bind().dialect.name == 'postgresql' else expression


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == 'postgresql':
        for enum in (OCCASION_STATUS, FINDING_STATUS, ACTION_STATUS):
            enum.create(bind, checkfirst=True)
    op.create_table('occasion',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('process', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('key', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('title', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('period_start', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('period_end', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('status', sa.Enum('open', 'collecting', 'awaiting_signoff', 'changes_requested', 'closed', 'cancelled',
                                name='occasionstatus', create_type=False), nullable=False),
    sa.Column('phase', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('opened_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('closed_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('report_path', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('report_sha256', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('signoff_step_id', sa.Integer(), nullable=True),
    sa.Column('signoff_round', sa.Integer(), nullable=False),
    sa.Column('flow_run_id', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.ForeignKeyConstraint(['signoff_step_id'], ['human_step.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('process', 'key', name='uq_occasion_process_key')
    )
    for table in ('audit', 'drill'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column('occasion_id', sa.Integer(), nullable=True))
            batch_op.create_index(batch_op.f(f'ix_{table}_occasion_id'), ['occasion_id'], unique=False)
            batch_op.create_foreign_key(f'fk_{table}_occasion_id', 'occasion', ['occasion_id'], ['id'])
    _backfill_occasions()

    with op.batch_alter_table('finding', schema=None) as batch_op:
        batch_op.add_column(sa.Column('origin_type', sqlmodel.sql.sqltypes.AutoString(), nullable=True))
        batch_op.add_column(sa.Column('origin_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('code', sqlmodel.sql.sqltypes.AutoString(), nullable=True))
        batch_op.add_column(sa.Column('occasion_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('process', sqlmodel.sql.sqltypes.AutoString(), nullable=True))
        batch_op.add_column(sa.Column('verifier_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('closed_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
    _backfill_origins()
    with op.batch_alter_table('finding', schema=None) as batch_op:
        for name in ('origin_type', 'code', 'process'):
            batch_op.alter_column(name, existing_type=sqlmodel.sql.sqltypes.AutoString(), nullable=False)
        batch_op.alter_column('origin_id', existing_type=sa.Integer(), nullable=False)
        batch_op.alter_column('status', existing_type=sqlmodel.sql.sqltypes.AutoString(),
                              type_=sa.Enum('open', 'closed', name='findingstatus', create_type=False),
                              existing_nullable=False, postgresql_using='status::findingstatus')
        batch_op.drop_index(batch_op.f('ix_finding_audit_id'))
        batch_op.drop_index(batch_op.f('ix_finding_drill_id'))
        batch_op.drop_constraint('fk_finding_drill_id', type_='foreignkey')
        # Their unnamed foreign keys and the control test's unique constraint go with the columns.
        batch_op.drop_column('drill_id')
        batch_op.drop_column('control_test_id')
        batch_op.drop_column('audit_id')
        batch_op.create_index(batch_op.f('ix_finding_occasion_id'), ['occasion_id'], unique=False)
        batch_op.create_index('ix_finding_status', ['status'], unique=False)
        batch_op.create_unique_constraint('uq_finding_origin', ['origin_type', 'origin_id', 'code'])
        batch_op.create_foreign_key('fk_finding_verifier_id', 'person', ['verifier_id'], ['id'])
        batch_op.create_foreign_key('fk_finding_occasion_id', 'occasion', ['occasion_id'], ['id'])

    with op.batch_alter_table('corrective_action', schema=None) as batch_op:
        batch_op.add_column(sa.Column('round', sa.Integer(), nullable=False, server_default='1'))
        batch_op.add_column(sa.Column('step_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('done_note', sqlmodel.sql.sqltypes.AutoString(), nullable=False,
                                      server_default=''))
        batch_op.add_column(sa.Column('evidence_url', sqlmodel.sql.sqltypes.AutoString(), nullable=True))
        batch_op.add_column(sa.Column('evidence_filename', sqlmodel.sql.sqltypes.AutoString(), nullable=True))
        batch_op.add_column(sa.Column('evidence_sha256', sqlmodel.sql.sqltypes.AutoString(), nullable=True))
        batch_op.add_column(sa.Column('evidence_path', sqlmodel.sql.sqltypes.AutoString(), nullable=True))
        batch_op.add_column(sa.Column('done_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column('verify_step_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('verified_by_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('verified_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column('verification_comment', sqlmodel.sql.sqltypes.AutoString(), nullable=False,
                                      server_default=''))
    op.execute(f"UPDATE corrective_action SET status = CASE "
               f"WHEN lower(trim(status)) IN {_ACTION_VERIFIED} THEN 'verified' "
               f"WHEN lower(trim(status)) IN {_ACTION_DONE} THEN 'done' "
               f"WHEN lower(trim(status)) = 'reopened' THEN 'reopened' ELSE 'open' END")
    with op.batch_alter_table('corrective_action', schema=None) as batch_op:
        for name, kind in (('round', sa.Integer()), ('done_note', sqlmodel.sql.sqltypes.AutoString()),
                           ('verification_comment', sqlmodel.sql.sqltypes.AutoString())):
            batch_op.alter_column(name, existing_type=kind, server_default=None, existing_nullable=False)
        batch_op.alter_column('status', existing_type=sqlmodel.sql.sqltypes.AutoString(),
                              type_=sa.Enum('open', 'done', 'verified', 'reopened', name='actionstatus',
                                            create_type=False),
                              existing_nullable=False, postgresql_using='status::actionstatus')
        batch_op.create_index('ix_corrective_action_status', ['status'], unique=False)
        batch_op.create_foreign_key('fk_corrective_action_verify_step_id', 'human_step', ['verify_step_id'], ['id'])
        batch_op.create_foreign_key('fk_corrective_action_verified_by_id', 'person', ['verified_by_id'], ['id'])
        batch_op.create_foreign_key('fk_corrective_action_step_id', 'human_step', ['step_id'], ['id'])


def _backfill_occasions() -> None:
    """One occasion per audit ("<framework> <period>") and per drill (its key), status, report and sign-off
    copied; the old status is the phase the process was in."""
    audit_status = _as("CAST(a.status AS VARCHAR)", "occasionstatus")
    op.execute(
        "INSERT INTO occasion (process, key, title, period_start, period_end, status, phase, opened_at, closed_at, "
        "report_path, report_sha256, signoff_step_id, signoff_round, flow_run_id) "
        "SELECT 'compliance-audit', f.name || ' ' || a.period, f.name || ' ' || a.period, a.period_start, "
        f"a.period_end, {audit_status}, CAST(a.status AS VARCHAR), a.opened_at, a.closed_at, a.report_path, "
        "a.report_sha256, a.signoff_step_id, a.signoff_round, NULL "
        "FROM audit a JOIN framework f ON f.id = a.framework_id")
    op.execute("UPDATE audit SET occasion_id = (SELECT o.id FROM occasion o JOIN framework f "
               "ON o.process = 'compliance-audit' AND o.key = f.name || ' ' || audit.period "
               "WHERE f.id = audit.framework_id)")
    drill_status = _as("CASE WHEN CAST(d.status AS VARCHAR) = 'closed' THEN 'closed' ELSE 'open' END",
                       "occasionstatus")
    op.execute(
        "INSERT INTO occasion (process, key, title, period_start, period_end, status, phase, opened_at, closed_at, "
        "report_path, report_sha256, signoff_step_id, signoff_round, flow_run_id) "
        f"SELECT 'emergency-drill', d.key, d.title, d.started_at, d.closes_at, {drill_status}, "
        "CAST(d.status AS VARCHAR), d.started_at, d.closed_at, d.report_path, d.report_sha256, NULL, 0, d.flow_run_id "
        "FROM drill d")
    op.execute("UPDATE drill SET occasion_id = (SELECT o.id FROM occasion o "
               "WHERE o.process = 'emergency-drill' AND o.key = drill.key)")


def _backfill_origins() -> None:
    """Each finding's origin from the foreign key it had; a control test has one finding ("control"), a drill's
    are told apart by the kind its trail event recorded ("missing", "rto"…), else by the finding's id."""
    op.execute("UPDATE finding SET origin_type = 'control_test', origin_id = control_test_id, code = 'control', "
               "process = 'compliance-audit' WHERE control_test_id IS NOT NULL")
    op.execute("UPDATE finding SET origin_type = 'drill', origin_id = drill_id, "
               "code = 'finding-' || CAST(id AS VARCHAR), process = 'emergency-drill' "
               "WHERE origin_type IS NULL AND drill_id IS NOT NULL")
    op.execute("UPDATE finding SET origin_type = 'audit', origin_id = audit_id, "
               "code = 'finding-' || CAST(id AS VARCHAR), process = 'compliance-audit' "
               "WHERE origin_type IS NULL AND audit_id IS NOT NULL")
    op.execute("UPDATE finding SET origin_type = 'finding', origin_id = id, code = 'finding-' || CAST(id AS VARCHAR), "
               "process = 'unknown' WHERE origin_type IS NULL")
    op.execute("UPDATE finding SET occasion_id = (SELECT occasion_id FROM audit WHERE audit.id = finding.audit_id), "
               "verifier_id = (SELECT f.compliance_manager_id FROM audit a JOIN framework f "
               "ON f.id = a.framework_id WHERE a.id = finding.audit_id) WHERE audit_id IS NOT NULL")
    op.execute("UPDATE finding SET occasion_id = (SELECT occasion_id FROM drill WHERE drill.id = finding.drill_id) "
               "WHERE drill_id IS NOT NULL")
    op.execute(f"UPDATE finding SET status = CASE WHEN lower(trim(status)) IN {_FINDING_CLOSED} "
               "THEN 'closed' ELSE 'open' END")
    bind = op.get_bind()
    events = sa.table('audit_event', sa.column('action', sa.String), sa.column('entity_type', sa.String),
                      sa.column('entity_id', sa.Integer), sa.column('data', sa.JSON))
    kinds: dict[int, str] = {}
    for entity_id, data in bind.execute(sa.select(events.c.entity_id, events.c.data).where(
            events.c.action == 'finding.raised', events.c.entity_type == 'finding')):
        kind = data.get('kind') if isinstance(data, dict) else None
        if isinstance(kind, str) and kind:
            kinds.setdefault(entity_id, kind)
    finding = sa.table('finding', sa.column('id', sa.Integer), sa.column('origin_type', sa.String),
                       sa.column('code', sa.String))
    for finding_id, kind in kinds.items():
        bind.execute(finding.update().where(finding.c.id == finding_id, finding.c.origin_type == 'drill')
                     .values(code=kind))


def downgrade() -> None:
    with op.batch_alter_table('corrective_action', schema=None) as batch_op:
        batch_op.drop_constraint('fk_corrective_action_step_id', type_='foreignkey')
        batch_op.drop_constraint('fk_corrective_action_verified_by_id', type_='foreignkey')
        batch_op.drop_constraint('fk_corrective_action_verify_step_id', type_='foreignkey')
        batch_op.drop_index('ix_corrective_action_status')
        batch_op.alter_column('status', existing_type=ACTION_STATUS, type_=sqlmodel.sql.sqltypes.AutoString(),
                              existing_nullable=False, postgresql_using='status::text')
        for name in ('verification_comment', 'verified_at', 'verified_by_id', 'verify_step_id', 'done_at',
                     'evidence_path', 'evidence_sha256', 'evidence_filename', 'evidence_url', 'done_note', 'step_id',
                     'round'):
            batch_op.drop_column(name)

    with op.batch_alter_table('finding', schema=None) as batch_op:
        batch_op.add_column(sa.Column('audit_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('control_test_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('drill_id', sa.Integer(), nullable=True))
    op.execute("UPDATE finding SET control_test_id = origin_id, audit_id = (SELECT audit_id FROM control_test "
               "WHERE control_test.id = finding.origin_id) WHERE origin_type = 'control_test'")
    op.execute("UPDATE finding SET drill_id = origin_id WHERE origin_type = 'drill'")
    op.execute("UPDATE finding SET audit_id = origin_id WHERE origin_type = 'audit'")
    with op.batch_alter_table('finding', schema=None) as batch_op:
        batch_op.drop_constraint('fk_finding_occasion_id', type_='foreignkey')
        batch_op.drop_constraint('fk_finding_verifier_id', type_='foreignkey')
        batch_op.drop_constraint('uq_finding_origin', type_='unique')
        batch_op.drop_index('ix_finding_status')
        batch_op.drop_index(batch_op.f('ix_finding_occasion_id'))
        batch_op.alter_column('status', existing_type=FINDING_STATUS, type_=sqlmodel.sql.sqltypes.AutoString(),
                              existing_nullable=False, postgresql_using='status::text')
        for name in ('closed_at', 'verifier_id', 'process', 'occasion_id', 'code', 'origin_id', 'origin_type'):
            batch_op.drop_column(name)
        batch_op.create_foreign_key('fk_finding_drill_id', 'drill', ['drill_id'], ['id'])
        batch_op.create_foreign_key('fk_finding_audit_id', 'audit', ['audit_id'], ['id'])
        batch_op.create_foreign_key('fk_finding_control_test_id', 'control_test', ['control_test_id'], ['id'])
        batch_op.create_unique_constraint('uq_finding_control_test_id', ['control_test_id'])
        batch_op.create_index(batch_op.f('ix_finding_drill_id'), ['drill_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_finding_audit_id'), ['audit_id'], unique=False)

    for table in ('drill', 'audit'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_constraint(f'fk_{table}_occasion_id', type_='foreignkey')
            batch_op.drop_index(batch_op.f(f'ix_{table}_occasion_id'))
            batch_op.drop_column('occasion_id')

    op.drop_table('occasion')
    if op.get_bind().dialect.name == 'postgresql':
        for enum in (ACTION_STATUS, FINDING_STATUS, OCCASION_STATUS):
            enum.drop(op.get_bind(), checkfirst=True)
