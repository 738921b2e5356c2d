"""An occasion's deadline and the parameters of the run that opened it, on a real registry (both databases)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlmodel import col, select

from engine.occasions import find, open_occasion, set_due
from registry import AuditEvent, Occasion, session
from registry.clock import as_utc, utcnow

START = datetime(2026, 11, 1, tzinfo=UTC)
PARAMETERS = {"month": "2026-11", "materiality_pct": 10.0, "justification_days": 5, "preview": False}


def _open(key: str, **given: object) -> Occasion:
    with session() as db:
        occasion, _ = open_occasion(db, process="test-process", key=key, title="A test occasion",
                                    period_start=START, period_end=START + timedelta(days=30), **given)  # type: ignore[arg-type]
        db.commit()
        db.refresh(occasion)
        return occasion


def _events(action: str, occasion_id: int) -> list[dict[str, object]]:
    with session() as db:
        return [e.data for e in db.exec(select(AuditEvent).where(
            AuditEvent.action == action, AuditEvent.entity_id == occasion_id).order_by(col(AuditEvent.id)))]


def test_an_occasion_keeps_the_deadline_and_parameters_it_was_opened_with_and_a_reopening_moves_neither(
        any_db: str) -> None:
    due = utcnow() + timedelta(days=7)
    opened = _open("2026-11", due_at=due, parameters=PARAMETERS)
    again = _open("2026-11", due_at=due + timedelta(days=3), parameters={**PARAMETERS, "justification_days": 8})

    assert again.id == opened.id
    with session() as db:
        stored = find(db, "test-process", "2026-11")
        assert stored is not None and stored.due_at is not None
        assert (as_utc(stored.due_at), stored.parameters) == (due, PARAMETERS), "the first opening's, not the re-run's"
    [event] = _events("occasion.opened", opened.id or 0)
    assert event["parameters"] == PARAMETERS and event["due_at"] == due.isoformat()


def test_an_occasion_opened_without_them_has_neither(any_db: str) -> None:
    opened = _open("plain")
    assert (opened.due_at, opened.parameters) == (None, None)


def test_a_deadline_is_set_once_and_the_run_that_loses_reads_the_winners(any_db: str) -> None:
    opened = _open("2026-12")
    first, second = utcnow() + timedelta(days=5), utcnow() + timedelta(days=9)
    with session() as late:
        stale = late.get(Occasion, opened.id)  # read before the other run sets the deadline
        assert stale is not None and stale.due_at is None
        with session() as db:
            held = db.get(Occasion, opened.id)
            assert held is not None
            assert set_due(db, held, first) is True
            assert held.due_at is not None and as_utc(held.due_at) == first
            db.commit()
        assert set_due(late, stale, second) is False, "a deadline is set once"
        assert stale.due_at is not None and as_utc(stale.due_at) == first, "the loser's copy reads the winner's"
        late.commit()

    with session() as db:
        stored = db.get(Occasion, opened.id)
        assert stored is not None and stored.due_at is not None and as_utc(stored.due_at) == first
    assert _events("occasion.due", opened.id or 0) == [{"before": None, "after": first.isoformat()}]


def test_an_occasion_opened_with_a_deadline_keeps_it(any_db: str) -> None:
    due = utcnow() + timedelta(days=2)
    opened = _open("with-due", due_at=due)
    with session() as db:
        held = db.get(Occasion, opened.id)
        assert held is not None
        assert set_due(db, held, due + timedelta(days=1)) is False
        assert held.due_at is not None and as_utc(held.due_at) == due
    assert _events("occasion.due", opened.id or 0) == []
