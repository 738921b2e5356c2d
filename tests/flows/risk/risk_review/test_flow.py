"""The quarterly risk review end to end: digests per owner, re-scores from links, the Director's gate, the report."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from pathlib import Path

from sqlmodel import col, select

from engine import periods
from flows.risk.risk_review.flow import ReviewOutcome, risk_review
from registry import CorrectiveAction, Finding, HumanStep, Notification, Occasion, OccasionStatus, StepStatus, session
from registry.risk import AcceptanceStatus, RiskAcceptance, RiskAssessment, RiskRescore
from registry.trail import verify
from tests.conftest import Gateway, Mailbox
from tests.flows.background import finished, in_background
from tests.flows.risk.risk_review.organisation import close_window, mails, organisation, risk
from tests.links import answer_link


def _quarter() -> str:
    return periods.quarter_of_day(periods.today()).name


def test_the_quarterly_review_from_the_owners_links_to_the_directors_gate_and_the_report(
        any_db: str, prefect_api: str, gateway: Gateway, smtp: Mailbox, tmp_path: Path) -> None:
    org = organisation(tmp_path)
    opened = risk_review()
    assert (opened.status, opened.risks, opened.key) == ("collecting", 3, _quarter())
    assert "run again after" in opened.detail, "called directly, the follow-up is left to a re-run"

    smtp.wait_for(2)
    assert Counter(m.to for m in smtp.messages()) == {org.olive.email: 1, org.omar.email: 1}, "one digest per owner"
    r1, r2 = mails(smtp, org.olive.email, "Risk review: re-score 2 risks")
    page = gateway.client.get(r2)
    assert "Ransomware" in page.text and "4 × 4 High" in page.text and "Almost certain" in page.text

    refused = answer_link(gateway.client, r2, {"decision": "rescore", "residual_likelihood": "3"})
    assert refused.status_code == 422 and "needs a rationale" in refused.text
    off = answer_link(gateway.client, r2, {"decision": "rescore", "residual_likelihood": "7", "rationale": "x"})
    assert off.status_code == 422 and "7 is not on the matrix" in off.text and "(1 to 5)" in off.text
    with session() as db:
        assert db.exec(select(RiskAssessment).where(col(RiskAssessment.step_id).is_not(None))).all() == [], \
            "a refused answer writes nothing"

    assert answer_link(gateway.client, r1, {"decision": "confirm"}).status_code == 200
    done = answer_link(gateway.client, r2, {"decision": "rescore", "residual_likelihood": "3",
                                            "rationale": "EDR rolled out to every laptop"})
    assert done.status_code == 200
    ransomware = risk("R-2")
    assert (ransomware.residual_likelihood, ransomware.residual_impact) == (3, 4), "applied as it is answered"
    assert ransomware.next_review_at is not None and ransomware.last_reviewed_at is not None
    with session() as db:
        made = db.exec(select(RiskAssessment).where(col(RiskAssessment.step_id).is_not(None))
                       .order_by(col(RiskAssessment.id))).all()
    assert [(a.residual_level, a.changed, a.reason) for a in made] == [("Medium", False, "cadence"),
                                                                       ("High", True, "cadence")]

    assert risk_review().status == "collecting", "a re-run inside the window changes nothing"
    assert len(smtp.messages()) == 2

    close_window(_quarter())
    thread, outcome = in_background(lambda: risk_review())
    ransomware_link, carrier_link = mails(smtp, org.director.email, "Decision needed: 2 risks above appetite")
    page = gateway.client.get(ransomware_link)
    assert "R-2 Ransomware" in page.text and "Low at most" in page.text
    past = answer_link(gateway.client, ransomware_link, {"decision": "accept", "accepted_until": "2020-01-01",
                                                         "justification": "x"})
    assert past.status_code == 422 and "is not in the future" in past.text
    until = periods.today() + timedelta(days=90)
    assert answer_link(gateway.client, ransomware_link, {
        "decision": "accept", "accepted_until": until.isoformat(),
        "justification": "EDR in place; the backup restore test is booked"}).status_code == 200
    nobody = answer_link(gateway.client, carrier_link, {"decision": "treat", "action": "Contract a second haulier",
                                                        "action_owner": "nobody@test.example"})
    assert nobody.status_code == 422 and "nobody in the registry has the address" in nobody.text
    assert answer_link(gateway.client, carrier_link, {"decision": "treat", "action": "Contract a second haulier",
                                                      "action_owner": org.omar.email}).status_code == 200
    result: ReviewOutcome = finished(thread, outcome, "the review")
    assert (result.status, result.above_appetite, result.accepted, result.treated, result.rescored) == (
        "closed", 2, 1, 1, 2), result
    assert Path(result.report_pdf).is_file()

    with session() as db:
        occasion = db.exec(select(Occasion).where(Occasion.key == _quarter())).one()
        decisions = {a.risk_id: a for a in db.exec(select(RiskAcceptance))}
        finding = db.exec(select(Finding).where(Finding.origin_type == "risk_acceptance")).one()
        action = db.exec(select(CorrectiveAction).where(CorrectiveAction.finding_id == finding.id)).one()
        unanswered = db.exec(select(HumanStep).join(RiskRescore, col(RiskRescore.step_id) == HumanStep.id)
                             .where(HumanStep.status == StepStatus.pending)).all()
        assert verify(db).ok
    assert occasion.status == OccasionStatus.closed and occasion.report_sha256
    accepted = decisions[ransomware.id or 0]
    assert (accepted.status, accepted.accepted_until) == (AcceptanceStatus.accepted, until)
    with session() as db:
        bound = db.get(RiskAssessment, accepted.assessment_id)
    assert bound is not None and bound.residual_level == "High", "the decision records the state it was given for"
    assert (finding.code, action.owner_id, action.description) == ("treatment", org.omar.id,
                                                                   "Contract a second haulier")
    assert len(unanswered) == 1, "Omar's re-score stays answerable after the deadline"
    assert mails(smtp, org.omar.email, "Risk treatment assigned to you: R-3")

    before = sorted((m.to, m.subject) for m in smtp.messages())
    again = risk_review()
    assert again.status == "closed" and again.detail == "already reviewed"
    assert sorted((m.to, m.subject) for m in smtp.messages()) == before, "a re-run sends nothing twice"
    with session() as db:
        keys = list(db.exec(select(Notification.idempotency_key)))
    assert len(keys) == len(set(keys))


def test_preview_sends_and_writes_nothing(prefect_api: str, smtp: Mailbox, tmp_path: Path) -> None:
    organisation(tmp_path)
    shown = risk_review(preview=True)
    assert shown.status == "preview" and "2 re-score request(s)" in shown.detail
    with session() as db:
        assert db.exec(select(Occasion)).all() == [] and db.exec(select(RiskRescore)).all() == []
    assert smtp.messages() == []


def test_a_question_another_review_waits_for_is_left_to_it_and_the_quarterly_report_is_still_written(
        prefect_api: str, gateway: Gateway, smtp: Mailbox, tmp_path: Path) -> None:
    org = organisation(tmp_path)
    one = f"{_quarter()} R-3"
    risk_review(risk_code="R-3")
    close_window(one)
    single, single_outcome = in_background(lambda: risk_review(risk_code="R-3"))
    [carrier] = mails(smtp, org.director.email, "Decision needed: 1 risk above appetite")

    risk_review()
    close_window(_quarter())
    quarterly, outcome = in_background(lambda: risk_review())
    asked = mails(smtp, org.director.email, "Decision needed: 1 risk above appetite", count=2)
    assert len(asked) == 2, "R-3's question stands: the quarterly review does not ask it twice"
    [ransomware] = [link for link in asked if link != carrier]
    assert "R-2 Ransomware" in gateway.client.get(ransomware).text
    until = (periods.today() + timedelta(days=30)).isoformat()
    answer_link(gateway.client, ransomware, {"decision": "accept", "accepted_until": until,
                                             "justification": "Until the restore test"}).raise_for_status()
    done: ReviewOutcome = finished(quarterly, outcome, "the quarterly review")
    assert (done.status, done.above_appetite, done.accepted) == ("closed", 2, 1) and Path(done.report_pdf).is_file()
    assert single.is_alive(), "the one-risk review still waits for its own question"

    answer_link(gateway.client, carrier, {"decision": "accept", "accepted_until": until,
                                          "justification": "Peak season contract"}).raise_for_status()
    assert finished(single, single_outcome, "the one-risk review").status == "closed"


def test_a_review_with_nothing_due_asks_the_director_at_once(prefect_api: str, gateway: Gateway, smtp: Mailbox,
                                                             tmp_path: Path) -> None:
    from sqlalchemy import update

    from registry.clock import utcnow
    from registry.risk import Risk

    org = organisation(tmp_path)
    with session() as db:
        db.execute(update(Risk).values(next_review_at=utcnow() + timedelta(days=400)))
    thread, outcome = in_background(lambda: risk_review())
    links = mails(smtp, org.director.email, "Decision needed: 2 risks above appetite")
    for link in links:
        answer_link(gateway.client, link, {"decision": "accept", "justification": "Within the insurance cover",
                                           "accepted_until": (periods.today() + timedelta(days=30)).isoformat()}
                    ).raise_for_status()
    done: ReviewOutcome = finished(thread, outcome, "the review")
    assert (done.status, done.risks, done.accepted) == ("closed", 0, 2)
    assert [m.to for m in smtp.messages()] == [org.director.email], "no owner asked: none of their risks is due"
