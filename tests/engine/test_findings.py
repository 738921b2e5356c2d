"""Corrective actions through their whole life on real parts: a real registry (both databases), the real SMTP
catcher, the real gateway over HTTP and the real deadline sweep."""

from __future__ import annotations

import re
import threading
from datetime import timedelta

import pytest
from sqlmodel import col, select

from engine import appliers, findings, inbox
from engine.findings import ActionSpec, Origin, raise_finding, working_days_for
from engine.human_steps import record_answer
from engine.sweep import sweep
from engine.work import Digest, unit
from registry import (
    ActionStatus,
    AuditEvent,
    CorrectiveAction,
    Criticality,
    Finding,
    FindingStatus,
    HumanStep,
    Person,
    StepStatus,
    session,
)
from registry.clock import utcnow
from tests import factories
from tests.conftest import Gateway, Mailbox
from tests.links import answer_link, links_in

HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)">')


def _action(action_id: int) -> CorrectiveAction:
    with session() as db:
        action = db.get(CorrectiveAction, action_id)
        assert action is not None
        return action


def _finding(finding_id: int) -> Finding:
    with session() as db:
        finding = db.get(Finding, finding_id)
        assert finding is not None
        return finding


def _step(step_id: int) -> HumanStep:
    with session() as db:
        step = db.get(HumanStep, step_id)
        assert step is not None
        return step


def _mail(smtp: Mailbox, count: int, to: str, subject: str) -> inbox.CaughtMail:
    """The one of `to`'s first `count` messages whose subject starts with `subject` (several arrive within a
    second, and the catcher orders those by name, not by arrival)."""
    [found] = [m for m in smtp.wait_for(count, to=to) if m.subject.startswith(subject)]
    return found


def _trail(*entities: tuple[str, int]) -> list[tuple[str, dict[str, object]]]:
    with session() as db:
        rows = db.exec(select(AuditEvent).order_by(col(AuditEvent.id)))
        return [(e.action, e.data) for e in rows if (e.entity_type, e.entity_id) in entities]


def test_a_corrective_action_is_raised_reminded_escalated_done_sent_back_verified_and_its_finding_closed(
        any_db: str, smtp: Mailbox, gateway: Gateway) -> None:
    now = utcnow()
    with unit() as db:
        manager = factories.person(db, "Mona Manager")
        owner = factories.person(db, "Omar Owner", manager=manager)
        verifier = factories.person(db, "Vera Verifier")
        raised = factories.finding(db, owner=owner, verifier=verifier, due=now + timedelta(days=3))
        assert raised.created and raised.action is not None and raised.step is not None
        # What a process does with what it raised: the owner's digest links to the step.
        asks = Digest(key=f"test-{raised.finding.id}-actions", template="action_request", context={},
                      items_as="actions")
        asks.add(owner.id or 0, {"description": raised.action.description, "finding": raised.finding.description,
                                 "severity": raised.finding.severity.value, "due_at": raised.action.due_at,
                                 "step_id": raised.step.id})
        asks.queue(db)
        again = raise_finding(db, origin=Origin(raised.finding.origin_type, raised.finding.origin_id),
                                        code=raised.finding.code, severity=Criticality.low, description="other",
                                        actor="test", process="test-process", action=None)
        ids = (raised.finding.id or 0, raised.action.id or 0, raised.step.id or 0)
        emails = (owner.email, manager.email, verifier.email)
    finding_id, action_id, first_step = ids
    owner_email, manager_email, verifier_email = emails
    assert (again.created, again.finding.id, again.action and again.action.id) == (False, finding_id, action_id)

    [asked] = smtp.wait_for(1, to=owner_email)
    assert asked.subject.startswith("A corrective action for you: Fix what finding")
    [link] = links_in(asked.html)
    assert gateway.client.get(link).status_code == 200
    assert _action(action_id).status == ActionStatus.open and _step(first_step).status == StepStatus.pending

    reminded = sweep(now=now + timedelta(days=3) - timedelta(hours=2))
    assert reminded.reminded == [first_step] and reminded.escalated == []
    _mail(smtp, 2, owner_email, "Reminder: Corrective action: Fix what finding")

    late = sweep(now=now + timedelta(days=3, hours=2))
    assert late.escalated == [first_step] and late.expired == []
    _mail(smtp, 3, owner_email, "Overdue")
    [escalation] = smtp.wait_for(1, to=manager_email)
    assert "Corrective action: Fix what finding" in escalation.text
    assert _step(first_step).status == StepStatus.pending, "still the owner's to report, long after the due date"

    empty = answer_link(gateway.client, link, {"what_was_done": "  "})
    assert empty.status_code == 422 and "Please say what was done." in empty.text
    hidden = dict(HIDDEN.findall(gateway.client.get(link).text))
    done = gateway.client.post(link, data={**hidden, "what_was_done": "Rotated the keys and added a monthly check.",
                                           "evidence_url": "https://dms.example/ca/1"})
    assert done.status_code == 200
    replay = gateway.client.post(link, data={**hidden, "what_was_done": "Something else"})
    assert replay.status_code == 409 and gateway.client.get(link).status_code == 409
    reported = _action(action_id)
    assert (reported.status, reported.done_note, reported.evidence_url, reported.round) == (
        ActionStatus.done, "Rotated the keys and added a monthly check.", "https://dms.example/ca/1", 1)
    assert reported.verify_step_id is not None and _step(reported.verify_step_id).person_id != reported.owner_id

    [verify_mail] = smtp.wait_for(1, to=verifier_email)
    assert verify_mail.subject == f"Verify a corrective action: {reported.description}"
    assert "Rotated the keys" in verify_mail.text and "https://dms.example/ca/1" in verify_mail.text
    [verify_link] = links_in(verify_mail.html)
    no_reason = answer_link(gateway.client, verify_link, {"effective": "no", "comment": ""})
    assert no_reason.status_code == 422 and "Please say what is still missing" in no_reason.text
    sent_back = answer_link(gateway.client, verify_link, {"effective": "no",
                                                          "comment": "The check is not scheduled anywhere."})
    assert sent_back.status_code == 200

    reopened = _action(action_id)
    assert (reopened.status, reopened.round, reopened.verification_comment) == (
        ActionStatus.reopened, 2, "The check is not scheduled anywhere.")
    assert reopened.step_id not in (None, first_step) and reopened.due_at > utcnow()
    back = _mail(smtp, 4, owner_email, f"Sent back: {reopened.description}")
    assert "The check is not scheduled anywhere." in back.text and "Vera Verifier" in back.text
    [second_link] = links_in(back.html)
    assert answer_link(gateway.client, second_link, {
        "what_was_done": "Scheduled the check in the team calendar."}).status_code == 200

    [second_verify] = [m for m in smtp.wait_for(2, to=verifier_email) if "Scheduled the check" in m.text]
    [second_verify_link] = links_in(second_verify.html)
    assert answer_link(gateway.client, second_verify_link, {"effective": "yes", "comment": "Seen it run."}) \
        .status_code == 200

    verified = _action(action_id)
    assert (verified.status, verified.round, verified.verified_at is not None) == (ActionStatus.verified, 2, True)
    closed = _finding(finding_id)
    assert closed.status == FindingStatus.closed and closed.closed_at is not None
    actions = [a for a, _ in _trail(("finding", finding_id), ("corrective_action", action_id))]
    assert actions == ["finding.raised", "action.done", "action.sent_back", "action.done", "action.verified",
                       "finding.closed"]
    transitions = [(d["before"], d["after"]) for a, d in _trail(("corrective_action", action_id))]  # type: ignore[misc]
    assert [(b["status"], a["status"]) for b, a in transitions] == [  # type: ignore[index]
        ("open", "done"), ("done", "reopened"), ("reopened", "done"), ("done", "verified")]
    assert sweep(now=utcnow()).applied == [], "the gateway applied every answer: nothing left to catch up"


def _answered_done_step(db_owner_note: str = "Done it.") -> tuple[int, int]:
    """An action whose owner's answer is recorded but not applied (as when the gateway died right after)."""
    with session() as db:
        owner = factories.person(db)
        verifier = factories.person(db)
        raised = factories.finding(db, owner=owner, verifier=verifier)
        assert raised.step is not None and raised.action is not None
        assert record_answer(db, step=raised.step, person=owner, answer={"what_was_done": db_owner_note})
        return raised.step.id or 0, raised.action.id or 0


def test_the_sweep_applies_an_answer_the_gateway_did_not_once(any_db: str, smtp: Mailbox) -> None:
    step_id, action_id = _answered_done_step()
    assert _action(action_id).status == ActionStatus.open

    first = sweep(now=utcnow())

    assert first.applied == [step_id]
    assert _action(action_id).status == ActionStatus.done and _action(action_id).verify_step_id is not None
    smtp.wait_for(1)
    assert sweep(now=utcnow()).applied == []
    assert len(smtp.messages()) == 1


def test_two_concurrent_applications_of_one_answer_apply_it_once(any_db: str, smtp: Mailbox) -> None:
    step_id, action_id = _answered_done_step()
    start = threading.Barrier(2)
    results: list[object] = []

    def apply() -> None:
        start.wait()
        try:
            results.append(appliers.apply_answered(step_id))
        except Exception as error:  # a lock the loser could not wait out changes nothing either
            results.append(error)

    threads = [threading.Thread(target=apply) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert results.count(True) == 1, results
    with session() as db:
        verifications = db.exec(select(HumanStep).where(HumanStep.subject_type == "corrective_action",
                                                        HumanStep.form == "action_verification")).all()
    assert len(verifications) == 1
    assert [a for a, _ in _trail(("corrective_action", action_id))] == ["action.done"]
    smtp.wait_for(1)
    assert len(smtp.messages()) == 1


def test_the_verifier_is_never_the_owner_and_falls_back_to_the_roles(registry_db: str) -> None:
    with session() as db:
        owner = factories.person(db)
        manager = factories.person(db)
        manager.roles = ["compliance manager"]
        db.add(manager)
        own = factories.finding(db, owner=owner, verifier=owner)
        unnamed = factories.finding(db, owner=owner)
        for raised in (own, unnamed):
            assert raised.action is not None
            assert findings._verifier(db, raised.finding, raised.action).id == manager.id
        alone = factories.finding(db, owner=manager)
        assert alone.action is not None
        with pytest.raises(findings.NoVerifier):
            findings._verifier(db, alone.finding, alone.action)


@pytest.mark.parametrize(("severity", "days"), [(Criticality.high, 10), (Criticality.medium, 20),
                                                (Criticality.low, 40)])
def test_the_corrective_action_window_follows_the_severity(severity: Criticality, days: int) -> None:
    assert working_days_for(severity) == days


def test_raising_without_an_action_asks_nobody(registry_db: str) -> None:
    with session() as db:
        raised = raise_finding(db, origin=Origin("test", 1), code="note", severity=Criticality.low,
                               description="Noted", actor="test", process="test-process", action=None)
        assert raised.created and raised.action is None and raised.step is None
        assert db.exec(select(HumanStep)).first() is None
        assert raised.finding.status == FindingStatus.open
        assert ActionSpec(owner_id=1, description="x", due_at=utcnow()).owner_id == 1
        assert db.exec(select(Person)).first() is None


def test_the_sweep_asks_the_owner_of_an_action_nobody_asked_once(any_db: str, smtp: Mailbox) -> None:
    """An action from before the lifecycle (a migrated registry) gets its owner's step and link, then is reminded
    and escalated like any other."""
    with session() as db:
        owner = factories.person(db, "Olga Owner")
        finding = Finding(origin_type="control_test", origin_id=7, code="control", process="compliance-audit",
                          severity=Criticality.medium, description="A.8.1 failed")
        db.add(finding)
        db.flush()
        action = CorrectiveAction(finding_id=finding.id or 0, owner_id=owner.id or 0, description="Fix A.8.1",
                                  due_at=utcnow() - timedelta(days=2))
        db.add(action)
        db.flush()
        action_id, email = action.id or 0, owner.email

    first = sweep(now=utcnow())

    step_id = _action(action_id).step_id
    assert step_id is not None and first.actions_asked == [step_id]
    assert first.escalated == [] and _step(step_id).expires_at > utcnow() + timedelta(days=100)
    _mail(smtp, 1, email, "A corrective action for you: Fix A.8.1")
    second = sweep(now=utcnow())
    assert second.actions_asked == [] and second.escalated == [step_id], "overdue: escalated once, as any step"
