"""audit: its state lives on its occasion; the columns that held it go

The compliance audit keeps its status, phase, period, report and sign-off on its occasion (0007 copied them
there). An audit 0007 left without an occasion gets one now, and whatever an occasion is missing that its audit
still holds is copied before the audit's columns are dropped. A downgrade fills them back from the occasion.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01 13:30:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = '0011'
down_revision: str | None = '0010'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

AUDIT_STATUS = sa.Enum('collecting', 'awaiting_signoff', 'changes_requested', 'closed', name='auditstatus')
_KEY = "f.name || ' ' || a.period"
_OF_AUDIT = "FROM audit a WHERE a.occasion_id = occasion.id"


def _as(expression: str, enum: str) -> str:
    """A text value into an enum column: PostgreSQL wants the enum type named, SQLite stores the text."""
    return f"CAST({expression} AS {enum})" if op.get_bind().dialect.name == 'postgresql' else expression


def upgrade() -> None:
    op.execute(
        "INSERT INTO occasion (process, key, title, period_start, period_end, status, phase, opened_at, closed_at, "
        "report_path, report_sha256, signoff_step_id, signoff_round, flow_run_id) "
        f"SELECT 'compliance-audit', {_KEY}, {_KEY}, a.period_start, a.period_end, "
        f"{_as('CAST(a.status AS VARCHAR)', 'occasionstatus')}, CAST(a.status AS VARCHAR), a.opened_at, a.closed_at, "
        "a.report_path, a.report_sha256, a.signoff_step_id, a.signoff_round, NULL "
        "FROM audit a JOIN framework f ON f.id = a.framework_id WHERE a.occasion_id IS NULL AND NOT EXISTS "
        f"(SELECT 1 FROM occasion o WHERE o.process = 'compliance-audit' AND o.key = {_KEY})")
    op.execute("UPDATE audit SET occasion_id = (SELECT o.id FROM occasion o JOIN framework f "
               "ON o.process = 'compliance-audit' AND o.key = f.name || ' ' || audit.period "
               "WHERE f.id = audit.framework_id) WHERE occasion_id IS NULL")
    for column in ('period_start', 'period_end', 'closed_at', 'report_path', 'report_sha256', 'signoff_step_id'):
        op.execute(f"UPDATE occasion SET {column} = (SELECT a.{column} {_OF_AUDIT}) "
                   f"WHERE {column} IS NULL AND EXISTS (SELECT 1 {_OF_AUDIT} AND a.{column} IS NOT NULL)")
    op.execute(f"UPDATE occasion SET signoff_round = (SELECT a.signoff_round {_OF_AUDIT}) "
               f"WHERE EXISTS (SELECT 1 {_OF_AUDIT} AND a.signoff_round > occasion.signoff_round)")
    with op.batch_alter_table('audit', schema=None) as batch_op:
        for column in ('period_start', 'period_end', 'status', 'opened_at', 'closed_at', 'report_sha256',
                       'report_path', 'signoff_step_id', 'signoff_round'):
            batch_op.drop_column(column)
    if op.get_bind().dialect.name == 'postgresql':
        AUDIT_STATUS.drop(op.get_bind(), checkfirst=True)


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == 'postgresql':
        AUDIT_STATUS.create(bind, checkfirst=True)
    with op.batch_alter_table('audit', schema=None) as batch_op:
        batch_op.add_column(sa.Column('period_start', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column('period_end', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column('status', sa.Enum('collecting', 'awaiting_signoff', 'changes_requested',
                                                        'closed', name='auditstatus', create_type=False),
                                      nullable=True))
        batch_op.add_column(sa.Column('opened_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column('closed_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column('report_sha256', sqlmodel.sql.sqltypes.AutoString(), nullable=True))
        batch_op.add_column(sa.Column('report_path', sqlmodel.sql.sqltypes.AutoString(), nullable=True))
        batch_op.add_column(sa.Column('signoff_step_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('signoff_round', sa.Integer(), nullable=True))
    status = ("CASE WHEN o.phase IN ('collecting', 'awaiting_signoff', 'changes_requested', 'closed') "
              "THEN o.phase ELSE 'collecting' END")
    op.execute(
        "UPDATE audit SET "
        + ", ".join(f"{column} = (SELECT o.{column} FROM occasion o WHERE o.id = audit.occasion_id)"
                    for column in ('period_start', 'period_end', 'opened_at', 'closed_at', 'report_sha256',
                                   'report_path', 'signoff_step_id', 'signoff_round'))
        + f", status = (SELECT {_as(status, 'auditstatus')} FROM occasion o WHERE o.id = audit.occasion_id)")
    op.execute(f"UPDATE audit SET status = {_as(repr('collecting'), 'auditstatus')} WHERE status IS NULL")
    op.execute("UPDATE audit SET signoff_round = 0 WHERE signoff_round IS NULL")
    op.execute("UPDATE audit SET opened_at = evidence_due_at WHERE opened_at IS NULL")
    op.execute("UPDATE audit SET period_start = evidence_due_at WHERE period_start IS NULL")
    op.execute("UPDATE audit SET period_end = evidence_due_at WHERE period_end IS NULL")
    with op.batch_alter_table('audit', schema=None) as batch_op:
        for column in ('period_start', 'period_end', 'status', 'opened_at', 'signoff_round'):
            batch_op.alter_column(column, nullable=False)
        batch_op.create_foreign_key('fk_audit_signoff_step_id', 'human_step', ['signoff_step_id'], ['id'])
