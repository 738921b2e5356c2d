"""Two writers opening the same row at the same moment: one creates it, the other gets that row, no error."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

from sqlmodel import select

from engine.human_steps import ask
from registry import AuditEvent, HumanStep, session
from registry.clock import utcnow
from tests import factories
from tests.flows.background import finished, in_background


def _ask(key: str, person_id: int) -> HumanStep:
    with session() as db:
        return ask(session=db, key=key, person_id=person_id, form="approval", kind="approval", title="Approve it",
                   subject_type="test", subject_id=1, due_at=utcnow() + timedelta(hours=1))


def test_of_two_runs_asking_the_same_step_at_once_one_asks_and_the_other_gets_that_step(any_db: str) -> None:
    with session() as db:
        person_id = factories.person(db).id or 0
    inserted, release = threading.Event(), threading.Event()

    def _first() -> int:
        with session() as db:
            step = ask(db, key="race", person_id=person_id, form="approval", kind="approval", title="Approve it",
                       subject_type="test", subject_id=1, due_at=utcnow() + timedelta(hours=1))
            inserted.set()
            release.wait(timeout=20)  # the step is written but not committed while the second run looks for it
            return step.id or 0

    first = in_background(_first)
    assert inserted.wait(timeout=20)
    second = in_background(lambda: _ask("race", person_id).id)
    # The second run has found no step and is inserting its own, which waits for the first run's transaction.
    time.sleep(1)
    assert second[0].is_alive(), f"the second insert should wait for the first transaction: {second[1]!r}"
    release.set()
    winner = finished(*first, "the first run")
    assert finished(*second, "the second run") == winner
    with session() as db:
        assert [s.id for s in db.exec(select(HumanStep))] == [winner]
        assert len(list(db.exec(select(AuditEvent).where(AuditEvent.action == "step.requested")))) == 1
