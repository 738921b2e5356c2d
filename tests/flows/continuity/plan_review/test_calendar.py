"""What the plan review puts on the calendar: each active plan's next review, overdue ones included."""

from __future__ import annotations

from datetime import timedelta

from engine.processes import process
from flows.continuity.plan_review.calendar import obligations
from registry import session
from registry.clock import utcnow
from tests import factories


def test_plan_reviews_falling_due_are_on_the_calendar(registry_db: str) -> None:
    with session() as db:
        owner = factories.person(db, "Olive Owner")
        overdue = factories.continuity_plan(db, owner=owner, review_cadence="0 9 1 1 *",
                                            last_reviewed_at=utcnow() - timedelta(days=400))
        on = utcnow() + timedelta(days=60)
        later = factories.continuity_plan(db, owner=owner, review_cadence=f"0 9 {on.day} {on.month} *",
                                          last_reviewed_at=utcnow() - timedelta(days=1))
        inactive = factories.continuity_plan(db, owner=owner, last_reviewed_at=utcnow() - timedelta(days=400))
        inactive.active = False
        db.add(inactive)
    with session() as db:
        found = {due.what: due for due in obligations(db, utcnow() + timedelta(days=30))}
    assert f"{overdue.code} {overdue.name}" in found, "overdue: on the calendar"
    assert f"{later.code} {later.name}" not in found and f"{inactive.code} {inactive.name}" not in found
    due = found[f"{overdue.code} {overdue.name}"]
    assert (due.kind, due.owner_id) == ("Plan review", owner.id) and due.due_at < utcnow()
    assert process("continuity-plan-review").obligations is obligations, "declared, so the report lists them"
