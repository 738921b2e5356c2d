from __future__ import annotations

import json

from sqlalchemy import text

from registry import session, trail


def _write(count: int) -> None:
    with session() as db:
        for n in range(count):
            trail.record(db, actor="tester", action="thing.done", entity_type="thing", entity_id=n,
                         data={"n": n, "note": "ünïcode ok"})


def test_an_untouched_trail_verifies(any_db: str) -> None:
    _write(5)
    with session() as db:
        report = trail.verify(db)
    assert report.ok and report.events == 5 and report.head != trail.GENESIS


def test_an_edited_row_is_detected(any_db: str) -> None:
    _write(5)
    with session() as db:
        db.execute(text("UPDATE audit_event SET data = :d WHERE id = 3"), {"d": json.dumps({"n": 99})})
    with session() as db:
        report = trail.verify(db)
    assert not report.ok
    assert any("event 3" in p and "edited" in p for p in report.problems)


def test_an_edited_actor_is_detected(any_db: str) -> None:
    _write(3)
    with session() as db:
        db.execute(text("UPDATE audit_event SET actor = 'someone else' WHERE id = 2"))
    with session() as db:
        assert any("event 2" in p for p in trail.verify(db).problems)


def test_a_deleted_row_is_detected(any_db: str) -> None:
    _write(5)
    with session() as db:
        db.execute(text("DELETE FROM audit_event WHERE id = 2"))
    with session() as db:
        problems = trail.verify(db).problems
    assert any("missing" in p for p in problems)
    assert any("event 3" in p and "chain" in p for p in problems)


def test_verify_trail_command_exits_nonzero_on_tampering(registry_db: str) -> None:
    from typer.testing import CliRunner

    from engine.cli import app

    _write(3)
    runner = CliRunner()
    assert runner.invoke(app, ["verify-trail"]).exit_code == 0
    with session() as db:
        db.execute(text("UPDATE audit_event SET action = 'thing.undone' WHERE id = 1"))
    result = runner.invoke(app, ["verify-trail"])
    assert result.exit_code == 1
    assert "event 1" in result.output
