"""A re-score takes effect as it is answered: a change voids the Director's decision given for the old state and
asks again at once; a confirmation voids nothing."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

from sqlmodel import col, select

from engine import periods
from engine.appliers import apply_unapplied
from flows.risk.risk_review.flow import risk_review
from registry import HumanStep, StepStatus, session
from registry.risk import AcceptanceStatus, RiskAcceptance, RiskAssessment
from tests.conftest import Gateway, Mailbox
from tests.flows.risk.risk_review.organisation import Org, close_window, mails, organisation, risk
from tests.links import answer_link


def _accepted(org: Org, code: str) -> RiskAcceptance:
    """The Director's acceptance of the risk's current state, until three months from now."""
    found = risk(code)
    with session() as db:
        assessment = db.exec(select(RiskAssessment).where(RiskAssessment.risk_id == found.id)
                             .order_by(col(RiskAssessment.id).desc())).first()
        assert assessment is not None
        row = RiskAcceptance(risk_id=found.id or 0, assessment_id=assessment.id or 0, key=f"test-{code}",
                             status=AcceptanceStatus.accepted, decision="accept",
                             accepted_until=periods.today() + timedelta(days=90), justification="Carried for now",
                             decided_by_id=org.director.id)
        db.add(row)
        db.flush()
        db.refresh(row)
        return row


def test_a_rescore_voids_the_acceptance_given_for_the_old_score_and_asks_the_director_again(
        any_db: str, prefect_api: str, gateway: Gateway, smtp: Mailbox, tmp_path: Path) -> None:
    org = organisation(tmp_path)
    given = _accepted(org, "R-3")
    opened = risk_review(risk_code="R-3")
    assert (opened.key, opened.risks) == (f"{periods.quarter_of_day(periods.today()).name} R-3", 1)
    [link] = mails(smtp, org.omar.email, "Risk review: re-score 1 risk")
    shown = gateway.client.get(link).text
    assert f"accepted until {given.accepted_until:%d %b %Y} — a change of score voids it" in shown, \
        "the owner knows what a re-score undoes"

    assert answer_link(gateway.client, link, {"decision": "rescore", "residual_impact": "5", "inherent_likelihood": "5",
                                              "rationale": "The second haulier fell through"}).status_code == 200
    with session() as db:
        voided = db.get(RiskAcceptance, given.id)
        asked = db.exec(select(RiskAcceptance).where(RiskAcceptance.status == AcceptanceStatus.pending)).one()
        step = db.get(HumanStep, asked.step_id)
    assert voided is not None and voided.status == AcceptanceStatus.voided and "re-scored" in voided.void_reason
    assert asked.assessment_id != given.assessment_id, "asked again for the new state"
    assert step is not None and step.person_id == org.director.id and step.status == StepStatus.pending
    [again] = mails(smtp, org.director.email, "Decision needed: 1 risk above appetite")
    page = gateway.client.get(again)
    assert "R-3 Single carrier" in page.text and "5 × 5 Critical" in page.text
    assert "Earlier decision" in page.text and "now void (re-scored by Omar Owner" in page.text
    assert re.search(r"Last score.*re-scored by Omar Owner on \d\d \w{3} \d{4}: The second haulier fell through",
                     page.text, re.S), "the Director reads who moved the score, when and why"
    assert 'type="date" name="accepted_until"' in page.text, "the day picked from a calendar"

    assert apply_unapplied() == [], "applied at the answer: the sweep's catch-up finds nothing left"
    with session() as db:
        assert len(db.exec(select(RiskAcceptance).where(RiskAcceptance.status == AcceptanceStatus.pending)).all()) == 1


def test_a_confirmation_records_the_review_and_keeps_the_acceptance(
        prefect_api: str, gateway: Gateway, smtp: Mailbox, tmp_path: Path) -> None:
    org = organisation(tmp_path)
    given = _accepted(org, "R-3")
    risk_review(risk_code="R-3")
    [link] = mails(smtp, org.omar.email, "Risk review: re-score 1 risk")
    same = answer_link(gateway.client, link, {"decision": "rescore", "residual_impact": "4", "rationale": "Same"})
    assert same.status_code == 422 and "These are the current scores" in same.text
    assert answer_link(gateway.client, link, {"decision": "confirm"}).status_code == 200
    with session() as db:
        kept = db.get(RiskAcceptance, given.id)
        made = db.exec(select(RiskAssessment).where(col(RiskAssessment.step_id).is_not(None))).one()
    assert kept is not None and kept.status == AcceptanceStatus.accepted
    assert (made.changed, made.reason) == (False, "ui")
    assert risk("R-3").last_reviewed_at is not None
    assert [m for m in smtp.messages(to=org.director.email)] == [], "nothing to ask the Director"


def test_the_owner_sees_the_findings_on_the_risks_controls_and_silence_is_escalated_to_their_manager(
        prefect_api: str, gateway: Gateway, smtp: Mailbox, tmp_path: Path) -> None:
    from datetime import datetime

    from sqlalchemy import update

    from engine.findings import Origin, raise_finding
    from engine.sweep import sweep
    from registry import Audit, Control, ControlTest, Criticality
    from registry.clock import utcnow
    from registry.risk import RiskControl
    from tests import factories

    org = organisation(tmp_path)
    carrier = risk("R-3")
    with session() as db:
        framework = factories.framework(db, manager=org.director, owners=[org.omar])
        control = db.exec(select(Control).where(Control.framework_id == framework.id)).one()
        db.add(RiskControl(risk_id=carrier.id or 0, control_id=control.id or 0))
        audit = Audit(framework_id=framework.id or 0, period="2026-Q3", evidence_due_at=utcnow())
        db.add(audit)
        db.flush()
        test = ControlTest(audit_id=audit.id or 0, control_id=control.id or 0, owner_id=org.omar.id or 0)
        db.add(test)
        db.flush()
        raise_finding(db, origin=Origin("control_test", test.id or 0), code="control", severity=Criticality.high,
                      description="The backup haulier contract was never signed", actor="test",
                      process="compliance-audit", action=None)
    risk_review(risk_code="R-3")
    [link] = mails(smtp, org.omar.email, "Risk review: re-score 1 risk")
    assert "1 finding on its controls since the last review" in smtp.messages(to=org.omar.email)[0].text
    page = gateway.client.get(link)
    assert "The backup haulier contract was never signed" in page.text and f"{control.ref} {control.title}" in page.text
    # A score is typed as a whole number (a number field, not free text).
    assert '<input type="number" step="1" inputmode="numeric" name="residual_likelihood"' in page.text

    with session() as db:
        db.execute(update(HumanStep).where(col(HumanStep.person_id) == org.omar.id)
                   .values(due_at=datetime.now().astimezone() - timedelta(hours=1)))
    sweep()
    told = mails(smtp, org.manager.email, "", count=1)
    assert told, "the owner's manager hears of the overdue re-score"
    assert "Re-score risk R-3" in smtp.messages(to=org.manager.email)[0].text


def test_a_late_rescore_above_appetite_asks_the_director_at_once(
        prefect_api: str, gateway: Gateway, smtp: Mailbox, tmp_path: Path) -> None:
    """Answered after the review's deadline (the link still works), a re-score that takes a risk above appetite is
    not left for the next quarterly review: the Director is asked the moment it is answered."""
    org = organisation(tmp_path)
    key = f"{periods.quarter_of_day(periods.today()).name} R-1"
    risk_review(risk_code="R-1")
    [link] = mails(smtp, org.olive.email, "Risk review: re-score 1 risk")
    close_window(key)
    assert risk_review(risk_code="R-1").status == "closed", "within appetite at the deadline: nothing to decide"
    assert not [m for m in smtp.messages() if m.to == org.director.email]

    assert answer_link(gateway.client, link, {"decision": "rescore", "residual_impact": "4",
                                              "rationale": "The flood barrier failed its test"}).status_code == 200
    [asked] = mails(smtp, org.director.email, "Decision needed: 1 risk above appetite")
    assert "R-1 was re-scored above its category's appetite after its review's deadline" in \
        smtp.messages(to=org.director.email)[0].text
    page = gateway.client.get(asked).text
    assert "R-1 Warehouse flood" in page and "The flood barrier failed its test" in page
    with session() as db:
        pending = db.exec(select(RiskAcceptance).where(RiskAcceptance.status == AcceptanceStatus.pending)).one()
    assert pending.risk_id == risk("R-1").id
