"""Withdrawing a question that no longer stands (engine.human_steps.cancel): once, on the trail, its link dead,
and a run waiting for it resumed with a cancelled decision — against a real registry, gateway and Prefect server."""

from __future__ import annotations

from prefect.client.schemas.objects import StateType
from sqlmodel import col, select

from engine import gate
from engine.answers import Verdict
from engine.human_steps import cancel, record_answer
from engine.sweep import sweep
from registry import AuditEvent, HumanStep, StepStatus, session
from tests import factories
from tests.conftest import Gateway
from tests.engine.test_sweep import _paused_run, _run_state


def _cancelled(step_id: int) -> list[AuditEvent]:
    with session() as db:
        return list(db.exec(select(AuditEvent).where(AuditEvent.entity_id == step_id,
                                                     AuditEvent.action == "step.cancelled")
                            .order_by(col(AuditEvent.id))))


def test_a_withdrawn_question_is_cancelled_once_and_its_link_says_so(gateway: Gateway) -> None:
    with session() as db:
        step = factories.step(db, factories.person(db))
        token = factories.link(db, step)
        step_id = step.id or 0

    with session() as db:
        step = db.get(HumanStep, step_id)
        assert step is not None
        assert cancel(db, step, actor="risk-review", reason="the risk was re-scored") is True
        assert cancel(db, step, actor="risk-review", reason="again") is False, "once"
        db.commit()

    with session() as db:
        assert (db.get(HumanStep, step_id) or HumanStep()).status is StepStatus.cancelled
    [event] = _cancelled(step_id)
    assert event.actor == "risk-review" and event.data == {"reason": "the risk was re-scored"}
    page = gateway.client.get(f"{gateway.url}/s/{token}")
    assert page.status_code == 410 and "This request was withdrawn" in page.text
    assert "already been answered" not in page.text, "nobody answered it: it was withdrawn"


def test_an_answered_question_is_not_withdrawn(registry_db: str) -> None:
    with session() as db:
        asked = factories.person(db)
        step = factories.step(db, asked)
        assert record_answer(db, step=step, person=asked, answer={"decision": "approve", "comment": ""})
        assert cancel(db, step, actor="test", reason="too late") is False
        db.commit()
        step_id = step.id or 0
    with session() as db:
        kept = db.get(HumanStep, step_id)
        assert kept is not None and kept.status is StepStatus.answered and kept.answer is not None
    assert _cancelled(step_id) == []


def test_a_run_waiting_on_a_withdrawn_question_is_resumed_with_a_cancelled_decision(
        registry_db: str, prefect_api: str) -> None:
    run_id = _paused_run()
    with session() as db:
        step = factories.step(db, factories.person(db), flow_run_id=run_id)
        assert cancel(db, step, actor="test", reason="no longer stands")
        db.commit()
        step_id = step.id or 0
    with session() as db:
        assert (db.get(HumanStep, step_id) or HumanStep()).resume_pending is True

    report = sweep()

    assert report.resumed == [step_id]
    assert _run_state(run_id) is StateType.RUNNING
    decided = gate.decision(step_id)
    assert decided is not None and decided.verdict == Verdict.cancelled and not decided.answered
