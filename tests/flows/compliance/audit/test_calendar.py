"""What the audit puts on the calendar: each active control's next test, overdue ones included."""

from __future__ import annotations

from datetime import timedelta

from sqlmodel import select

from engine.processes import process
from flows.compliance.audit.calendar import obligations
from registry import Control, session
from registry.clock import utcnow
from tests import factories


def test_control_tests_falling_due_are_on_the_calendar(registry_db: str) -> None:
    with session() as db:
        manager = factories.person(db, "Clara Compliance")
        owner = factories.person(db, "Olive Owner")
        framework = factories.framework(db, manager=manager, owners=[owner, owner, owner])
        overdue, later, inactive = db.exec(select(Control).where(Control.framework_id == framework.id)
                                           .order_by(Control.ref)).all()  # type: ignore[arg-type]
        overdue.next_due_at = utcnow() - timedelta(days=3)
        later.next_due_at = utcnow() + timedelta(days=60)
        inactive.next_due_at, inactive.active = utcnow() - timedelta(days=3), False
        db.add_all([overdue, later, inactive])
        names = [f"{c.ref} {c.title}" for c in (overdue, later, inactive)]
    with session() as db:
        found = {due.what: due for due in obligations(db, utcnow() + timedelta(days=30))}
    assert names[0] in found, "overdue: on the calendar"
    assert names[1] not in found and names[2] not in found
    due = found[names[0]]
    assert (due.kind, due.owner_id) == ("Control test", owner.id) and due.due_at < utcnow()
    assert process("compliance-audit").obligations is obligations, "declared, so the report lists them"


def test_a_control_never_scheduled_falls_due_by_its_cadence_after_its_last_test(any_db: str) -> None:
    now = utcnow()
    with session() as db:
        manager = factories.person(db, "Clara Compliance")
        owner = factories.person(db, "Olive Owner")
        framework = factories.framework(db, manager=manager, owners=[owner] * 4, cadence="0 9 * * *")
        daily, tested, leap_day, scheduled_later = db.exec(
            select(Control).where(Control.framework_id == framework.id).order_by(Control.ref)).all()  # type: ignore[arg-type]
        tested.last_tested_at = now - timedelta(days=3)  # its next daily test was two days ago
        leap_day.cadence = "0 9 29 2 *"  # never within the horizon
        scheduled_later.next_due_at = now + timedelta(days=60)  # a stored date wins over the cadence
        db.add_all([tested, leap_day, scheduled_later])
        names = [f"{c.ref} {c.title}" for c in (daily, tested, leap_day, scheduled_later)]
    with session() as db:
        found = {due.what: due.due_at for due in obligations(db, now + timedelta(days=2))}
    assert set(found) == {names[0], names[1]}
    assert now < found[names[0]] <= now + timedelta(days=1), "never tested: the cadence's next from now"
    assert found[names[1]] < now - timedelta(days=1), "overdue: the cadence's next after its last test"
