"""plan review rounds: each continuity plan review request that lapsed becomes its round, an occasion closed as missed

The plan review kept its lapses as trail events it read back to decide whether to ask again; it now keeps each
request's round on the occasion table (process continuity-plan-review, keyed as the request, phase missed). A
lapse recorded before this upgrade still counts: its round is written here from the trail event, closed when the
lapse was recorded. Nothing else changes, so a downgrade deletes nothing it cannot tell apart from later rounds.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 13:00:00
"""
from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from alembic import op
from sqlmodel.sql.sqltypes import UTCDateTime

revision: str = '0009'
down_revision: str | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PROCESS = 'continuity-plan-review'
MISSED = 'continuity_plan.review_missed'


def _table(name: str, **columns: sa.types.TypeEngine[object]) -> sa.TableClause:
    return sa.table(name, *(sa.column(column, kind) for column, kind in columns.items()))


def upgrade() -> None:
    bind = op.get_bind()
    when = UTCDateTime()
    event = _table('audit_event', action=sa.String(), entity_type=sa.String(), entity_id=sa.Integer(), at=when,
                   data=sa.JSON())
    step = _table('human_step', id=sa.Integer(), key=sa.String(), created_at=when, flow_run_id=sa.String(),
                  details=sa.JSON())
    plan = _table('continuity_plan', id=sa.Integer(), code=sa.String())
    occasion = _table('occasion', process=sa.String(), key=sa.String(), title=sa.String(), period_start=when,
                      period_end=when, status=sa.Enum('closed', name='occasionstatus', create_type=False),
                      phase=sa.String(), opened_at=when, closed_at=when, signoff_round=sa.Integer(),
                      flow_run_id=sa.String())
    lapses = bind.execute(sa.select(event.c.at, event.c.data, plan.c.code)
                          .join(plan, plan.c.id == event.c.entity_id)
                          .where(event.c.action == MISSED, event.c.entity_type == 'continuity_plan')
                          .order_by(event.c.at)).all()
    steps = {row.id: row for row in bind.execute(sa.select(step).where(step.c.id.in_(
        [int(lapse.data['step_id']) for lapse in lapses if lapse.data.get('step_id') is not None])))}
    kept = set(bind.execute(sa.select(occasion.c.key).where(occasion.c.process == PROCESS)).scalars())
    for lapse in lapses:
        asked = steps.get(int(lapse.data.get('step_id') or 0))
        if asked is None or asked.key in kept:
            continue
        kept.add(asked.key)
        due = (asked.details or {}).get('_review_due')
        bind.execute(sa.insert(occasion).values(
            process=PROCESS, key=asked.key, title=f"Review of {lapse.code} ({lapse.data.get('occasion', '')})",
            period_start=datetime.fromisoformat(due) if due else None, period_end=None,
            status='closed', phase='missed', opened_at=asked.created_at, closed_at=lapse.at, signoff_round=0,
            flow_run_id=asked.flow_run_id))


def downgrade() -> None:
    # Rounds written here and rounds written since cannot be told apart, and 0007's downgrade drops the table.
    pass
