"""The deadline sweep against a real registry, a real SMTP server, the real gateway and a real Prefect server."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import StateType
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.states import Completed, Paused, Running
from sqlmodel import col, select

from engine.human_steps import record_answer
from engine.sweep import sweep
from engine.work import Digest, request, unit
from registry import AuditEvent, HumanStep, Person, StepStatus, session
from registry.clock import utcnow
from tests import factories
from tests.conftest import Gateway, Mailbox, free_port
from tests.links import answer_link, links_in


def _step(step_id: int) -> HumanStep:
    with session() as db:
        step = db.get(HumanStep, step_id)
        assert step is not None
        return step


def _events(step_id: int, action: str) -> list[AuditEvent]:
    with session() as db:
        return list(db.exec(select(AuditEvent).where(AuditEvent.entity_id == step_id, AuditEvent.action == action)
                            .order_by(col(AuditEvent.id))))


@contextmanager
def _prefect_unreachable() -> Iterator[None]:
    """Point this thread's Prefect client at a port nobody listens on."""
    with temporary_settings(updates={PREFECT_API_URL: f"http://127.0.0.1:{free_port()}/api"}):
        yield


def test_a_step_due_within_the_reminder_window_gets_one_reminder(smtp: Mailbox) -> None:
    now = utcnow()
    with session() as db:
        asked = factories.person(db, "Nora Owner")
        soon = factories.step(db, asked, title="Approve the payroll run", due=now + timedelta(hours=30),
                              expires=now + timedelta(days=3))
        later = factories.step(db, asked, title="Approve next month's budget", due=now + timedelta(days=3))
        just_asked = factories.step(db, asked, title="Approve the late change", due=now + timedelta(hours=6))
        soon_id, later_id, just_id, email = soon.id, later.id, just_asked.id, asked.email
    assert soon_id is not None and later_id is not None and just_id is not None

    assert sweep(now=now).reminded == [], "asked inside the window: the request itself is the reminder"
    first = sweep(now=now + timedelta(hours=10))

    assert first.reminded == [soon_id] and first.escalated == [] and first.delivered == 1
    [mail] = smtp.wait_for(1)
    assert email in mail.to
    assert mail.subject.startswith("Reminder: Approve the payroll run")
    assert len(links_in(mail.html)) == 1
    assert _step(soon_id).reminded_at is not None and _step(later_id).reminded_at is None
    assert _step(just_id).reminded_at is None

    second = sweep(now=now + timedelta(hours=11))

    assert second.reminded == [] and second.delivered == 0
    assert len(smtp.messages()) == 1


def test_an_overdue_step_is_escalated_once_to_a_manager_whose_link_works(smtp: Mailbox, gateway: Gateway) -> None:
    now = utcnow()
    with session() as db:
        manager = factories.person(db, "Maya Manager")
        asked = factories.person(db, "Olly Owner", manager=manager)
        step = factories.step(db, asked, title="Approve the supplier change", due=now - timedelta(hours=1),
                              expires=now + timedelta(days=2))
        step_id, manager_id, asked_id = step.id, manager.id, asked.id
        manager_email, asked_email = manager.email, asked.email
    assert step_id is not None

    report = sweep(now=now)

    assert report.escalated == [step_id] and report.expired == []
    escalation = smtp.wait_for(1, to=manager_email)
    assert len(escalation) == 1
    assert escalation[0].subject == "Escalated to you: Approve the supplier change (Olly Owner, overdue)"
    assert [m.subject for m in smtp.wait_for(1, to=asked_email)] == ["Overdue: Approve the supplier change"]
    assert _step(step_id).escalation_level == 1
    [escalated] = _events(step_id, "step.escalated")
    assert escalated.data == {"level": 1, "to": [manager_email], "why_nobody": None}

    again = sweep(now=now + timedelta(minutes=5))

    assert again.escalated == [] and again.delivered == 0
    assert len(smtp.messages()) == 2 and len(_events(step_id, "step.escalated")) == 1

    [url] = links_in(escalation[0].html)
    page = gateway.client.get(url)
    assert page.status_code == 200 and "given by you, Maya Manager" in page.text
    assert "You are answering for <strong>Olly Owner</strong>" in page.text, "the manager sees whose step it is"
    answered = answer_link(gateway.client, url, {"decision": "approve", "comment": "Approved in Olly's absence."})
    assert answered.status_code == 200
    decided = _step(step_id)
    assert decided.status is StepStatus.answered and decided.answered_by_id == manager_id
    [event] = _events(step_id, "step.answered")
    assert event.data["on_behalf_of"] == asked_id


def test_a_step_past_its_expiry_is_expired_and_its_link_refused(smtp: Mailbox, gateway: Gateway) -> None:
    now = utcnow()
    with session() as db:
        asked = factories.person(db)
        gone = factories.step(db, asked, due=now - timedelta(days=3), expires=now - timedelta(minutes=1))
        live = factories.step(db, asked, due=now - timedelta(days=3), expires=now + timedelta(hours=1))
        token = factories.link(db, gone)
        gone_id, live_id = gone.id, live.id
    assert gone_id is not None and live_id is not None

    report = sweep(now=now)

    assert report.expired == [gone_id]
    assert _step(gone_id).status is StepStatus.expired
    assert _step(live_id).status is StepStatus.pending
    [event] = _events(gone_id, "step.expired")
    assert event.actor == "sweep"
    refused = gateway.client.get(f"{gateway.url}/s/{token}")
    assert refused.status_code == 410
    assert "This link has expired" in refused.text
    assert sweep(now=now).expired == [] and len(_events(gone_id, "step.expired")) == 1


@flow(name="ops-test-waits-for-a-step")
def _waits_for_a_step() -> None:
    """Never run: only its runs are created, then paused, to stand for a run waiting on a step."""


def _paused_run() -> str:
    with get_client(sync_client=True) as client:
        run = client.create_flow_run(_waits_for_a_step, name=f"waits-{uuid.uuid4().hex[:8]}")
        client.set_flow_run_state(run.id, Running(), force=True)
        client.set_flow_run_state(run.id, Paused(timeout_seconds=600, pause_key="step"), force=True)
        return str(run.id)


def _run_state(run_id: str) -> StateType | None:
    with get_client(sync_client=True) as client:
        state = client.read_flow_run(uuid.UUID(run_id)).state
        return state.type if state else None


def _answer(step_id: int) -> None:
    """Record an answer as the gateway does when it cannot reach Prefect: the row says a resume is owed."""
    with session() as db:
        step = db.get(HumanStep, step_id)
        assert step is not None
        person = db.get(Person, step.person_id)
        assert person is not None
        assert record_answer(db, step=step, person=person, answer={"decision": "approve", "comment": ""})


def test_an_answer_recorded_while_prefect_is_down_is_handed_back_when_it_returns(
        registry_db: str, prefect_api: str) -> None:
    run_id = _paused_run()
    with session() as db:
        step = factories.step(db, factories.person(db), flow_run_id=run_id)
        step_id = step.id
    assert step_id is not None
    _answer(step_id)
    assert _step(step_id).resume_pending is True

    with _prefect_unreachable():
        down = sweep()

    assert down.resumed == []
    assert _step(step_id).resume_pending is True
    assert _run_state(run_id) is StateType.PAUSED

    up = sweep()

    assert up.resumed == [step_id]
    assert _step(step_id).resume_pending is False
    assert _run_state(run_id) is StateType.RUNNING
    assert sweep().resumed == []


def test_a_run_waiting_on_a_step_that_expires_is_resumed_by_the_same_sweep(registry_db: str,
                                                                          prefect_api: str) -> None:
    run_id = _paused_run()
    now = utcnow()
    with session() as db:
        step = factories.step(db, factories.person(db), flow_run_id=run_id, due=now - timedelta(days=3),
                              expires=now - timedelta(minutes=1))
        step_id = step.id
    assert step_id is not None

    report = sweep(now=now)

    assert report.expired == [step_id] and report.resumed == [step_id]
    expired = _step(step_id)
    assert expired.status is StepStatus.expired and expired.resume_pending is False
    assert _run_state(run_id) is StateType.RUNNING


@pytest.mark.parametrize("finished", [False, True], ids=["unknown-run", "finished-run"])
def test_a_run_that_cannot_take_the_answer(registry_db: str, prefect_api: str, finished: bool) -> None:
    """A finished or deleted run never takes the answer: the sweep stops trying (the answer stays recorded)."""
    if finished:
        run_id = _paused_run()
        with get_client(sync_client=True) as client:
            client.set_flow_run_state(uuid.UUID(run_id), Completed(), force=True)
    else:
        run_id = str(uuid.uuid4())
    with session() as db:
        step = factories.step(db, factories.person(db), flow_run_id=run_id)
        step_id = step.id
    assert step_id is not None
    _answer(step_id)

    report = sweep()

    assert _step(step_id).status is StepStatus.answered
    assert report.resumed == [step_id] and _step(step_id).resume_pending is False
    assert _step(step_id).answer is not None


def test_an_overdue_step_is_escalated_to_whom_it_names_besides_the_managers(smtp: Mailbox, gateway: Gateway) -> None:
    """A cost centre's manager is not the owner's manager: a step asked with escalate_to reaches both, whether
    asked alone (engine.work.request) or in a digest (Digest.ask), and the escalation's link answers it."""
    now = utcnow()
    with session() as db:
        line_manager = factories.person(db, "Lena Line")
        centre_manager = factories.person(db, "Cato Centre")
        owner = factories.person(db, "Olga Owner", manager=line_manager)
    with unit() as db:
        alone = request(db, key=f"escalate-to-{uuid.uuid4().hex[:8]}", person_id=owner.id or 0, form="action_done",
                        title="Explain the travel overspend", subject_type="test", subject_id=1,
                        due_at=now - timedelta(hours=1), expires_at=now + timedelta(days=2),
                        template="step_reminder", context={}, actor="test", escalate_to=(centre_manager.id or 0,))
        digest = Digest(key=f"escalate-to-{uuid.uuid4().hex[:8]}", template="action_request", context={},
                        items_as="actions")
        listed = digest.ask(db, item={"description": "Explain the IT overspend", "finding": "", "due_at": now,
                                      "severity": "high"},
                            key=f"escalate-to-{uuid.uuid4().hex[:8]}", person_id=owner.id or 0, form="action_done",
                            title="Explain the IT overspend", subject_type="test", subject_id=2,
                            due_at=now - timedelta(hours=1), expires_at=now + timedelta(days=2), actor="test",
                            escalate_to=[centre_manager.id or 0, owner.id or 0])
        digest.queue(db)
        ids = sorted([alone.id or 0, listed.id or 0])
    smtp.wait_for(2, to=owner.email)

    report = sweep(now=now)

    assert report.escalated == ids
    for step_id in ids:
        [escalated] = _events(step_id, "step.escalated")
        assert escalated.data["to"] == [line_manager.email, centre_manager.email], "never the owner themselves"
    [to_centre] = smtp.wait_for(1, to=centre_manager.email)
    assert "Explain the travel overspend" in to_centre.text and "Explain the IT overspend" in to_centre.text
    assert len(smtp.wait_for(1, to=line_manager.email)) == 1
    urls = links_in(to_centre.html)
    assert len(urls) == 2
    answer_link(gateway.client, urls[0], {"what_was_done": "Two trips were rebooked."}) \
        .raise_for_status()
    answered = [_step(i) for i in ids if _step(i).status is StepStatus.answered]
    assert [s.answered_by_id for s in answered] == [centre_manager.id]
