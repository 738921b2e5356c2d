"""A registry made before plan review rounds were kept: a lapse it recorded (only in the trail) still counts."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import update
from sqlmodel import col, select

from engine.human_steps import ask
from engine.occasions import find
from flows.continuity.plan_review.tasks import due_plans
from registry import ContinuityPlan, HumanStep, OccasionStatus, StepStatus, reset_engines, session, trail
from registry.clock import utcnow
from registry.migrate import alembic_config
from registry.trail import verify
from tests import factories

LEAD = timedelta(days=14)


def _before_rounds(config: object) -> str:
    script = ScriptDirectory.from_config(config)  # type: ignore[arg-type]
    [rounds] = [r for r in script.walk_revisions() if Path(r.path).stem.endswith("_plan_review_rounds")]
    assert isinstance(rounds.down_revision, str)
    return rounds.down_revision


def test_a_lapse_recorded_before_the_upgrade_still_counts(any_db: str) -> None:
    config = alembic_config(any_db)
    command.downgrade(config, _before_rounds(config))
    reset_engines()
    today = utcnow()
    with session() as db:
        manager = factories.person(db, "Max Manager")
        owner = factories.person(db, "Olive Owner", manager=manager)
        plan = factories.continuity_plan(db, owner=owner, review_cadence="0 9 1 6 *", last_reviewed_at=None)
        occasion = today.date().isoformat()
        step = ask(db, key=f"plan-review-{plan.id}-{occasion}", person_id=owner.id or 0, form="plan_review",
                   title="Review", subject_type="continuity_plan", subject_id=plan.id or 0,
                   due_at=today, expires_at=today, actor="continuity-review",
                   details={"_occasion": occasion, "_review_due": today.isoformat()})
        db.execute(update(HumanStep).where(col(HumanStep.id) == step.id).values(status=StepStatus.expired))
        trail.record(db, actor="continuity-review", action="continuity_plan.review_missed",
                     entity_type="continuity_plan", entity_id=plan.id or 0,
                     data={"step_id": step.id, "occasion": occasion, "outcome": "expired",
                           "asked": owner.email, "owner": owner.email, "manager_told": manager.email})
        key, plan_id = step.key, plan.id
    command.upgrade(config, "head")
    reset_engines()

    with session() as db:
        round_ = find(db, "continuity-plan-review", key)
        assert round_ is not None and (round_.status, round_.phase) == (OccasionStatus.closed, "missed")
        plans = list(db.exec(select(ContinuityPlan).where(ContinuityPlan.id == plan_id)))
        assert due_plans(db, plans, LEAD, utcnow()) == [], "recorded today: nobody is asked again today"
        [tomorrow] = due_plans(db, plans, LEAD, utcnow() + timedelta(days=1))
        assert (tomorrow.asked_before, tomorrow.open_step_id) == (True, None), "asked again, as lapsed before"
        assert verify(db).ok, "the upgrade leaves the trail as it was"
