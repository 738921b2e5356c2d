"""The daily dispatcher: a KRI breach asks once, an expired acceptance reopens the review and the Director decides
again."""

from __future__ import annotations

import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from sqlmodel import col, select

from engine import periods, runs
from flows.risk.risk_review.dispatch import record_triggers, risk_review_dispatch
from flows.risk.risk_review.flow import risk_review
from registry import session
from registry.risk import AcceptanceStatus, RiskAcceptance, RiskAssessment, RiskIndicator, RiskRescore
from tests.conftest import Gateway, Mailbox
from tests.flows.background import finished, in_background
from tests.flows.risk.risk_review.organisation import close_window, mails, measure, organisation, risk
from tests.links import answer_link


def _rescores(reason: str) -> list[RiskRescore]:
    with session() as db:
        return list(db.exec(select(RiskRescore).where(RiskRescore.reason == reason).order_by(col(RiskRescore.id))))


def test_a_kri_breach_asks_its_risk_owner_once(any_db: str, prefect_api: str, gateway: Gateway, smtp: Mailbox,
                                               tmp_path: Path) -> None:
    org = organisation(tmp_path, kri="IRT>6")
    measure("IRT", 5.5, date.today() - timedelta(days=7))
    assert record_triggers.fn() == ([], []), "within the threshold: nothing"
    measure("IRT", 9.0)
    assert record_triggers.fn() == (["R-2 IRT"], [])
    assert record_triggers.fn() == ([], []), "the same breach asks once"
    [asked] = _rescores("kri")
    assert asked.measurement_id is not None and asked.occasion_id is None

    opened = risk_review(risk_code="R-2", request=asked.key)
    assert (opened.key, opened.risks) == (asked.key, 1)
    [link] = mails(smtp, org.olive.email, "Risk review: re-score 1 risk")
    page = gateway.client.get(link)
    assert "IRT Incident response time" in page.text and "9 h" in page.text and "above 6 h is a breach" in page.text
    assert risk_review(risk_code="R-2", request=asked.key).status == "collecting"
    assert len(smtp.messages(to=org.olive.email)) == 1, "the review's re-run asks nothing again"

    measure("IRT", 11.0, date.today() + timedelta(days=1))
    assert record_triggers.fn() == ([], []), "a further breach while the re-score is open asks nothing more"
    with session() as db:
        indicator = db.exec(select(RiskIndicator)).one()
    assert indicator.last_breach_measurement_id is not None and indicator.last_breach_measurement_id > (
        asked.measurement_id or 0), "the newer breach is recorded as seen"

    assert answer_link(gateway.client, link, {"decision": "rescore", "residual_likelihood": "5",
                                              "rationale": "Response times doubled"}).status_code == 200
    with session() as db:
        made = db.exec(select(RiskAssessment).where(col(RiskAssessment.step_id).is_not(None))).one()
    assert (made.reason, made.residual_level) == ("kri", "Critical")


def test_an_expired_acceptance_reopens_the_review_and_the_director_decides_again(
        any_db: str, prefect_api: str, gateway: Gateway, smtp: Mailbox, tmp_path: Path) -> None:
    org = organisation(tmp_path)
    carrier = risk("R-3")
    with session() as db:
        assessment = db.exec(select(RiskAssessment).where(RiskAssessment.risk_id == carrier.id)).one()
        db.add(RiskAcceptance(risk_id=carrier.id or 0, assessment_id=assessment.id or 0, key="test-old",
                              status=AcceptanceStatus.accepted, decision="accept", justification="For the peak",
                              accepted_until=periods.today() - timedelta(days=1), decided_by_id=org.director.id))
    assert record_triggers.fn() == ([], ["R-3"])
    assert record_triggers.fn() == ([], []), "expired once"
    [asked] = _rescores("expired")
    with session() as db:
        assert db.exec(select(RiskAcceptance.status)).one() == AcceptanceStatus.expired

    risk_review(risk_code="R-3", request=asked.key, rescore_minutes=1)
    [link] = mails(smtp, org.omar.email, "Risk review: re-score 1 risk")
    assert "acceptance of one of your risks has expired" in smtp.messages(to=org.omar.email)[0].text
    assert answer_link(gateway.client, link, {"decision": "confirm"}).status_code == 200

    close_window(asked.key)
    thread, outcome = in_background(lambda: risk_review(risk_code="R-3", request=asked.key, rescore_minutes=1))
    [decide] = mails(smtp, org.director.email, "Decision needed: 1 risk above appetite")
    until = periods.today() + timedelta(days=30)
    assert answer_link(gateway.client, decide, {"decision": "accept", "accepted_until": until.isoformat(),
                                                "justification": "Second haulier signs in January"}).status_code == 200
    done = finished(thread, outcome, "the reopened review")
    assert (done.status, done.accepted) == ("closed", 1)
    with session() as db:
        statuses = sorted(a.status.value for a in db.exec(select(RiskAcceptance)))
    assert statuses == ["accepted", "expired"]


def _state_of(run_id: object, *wanted: str, seconds: float = 90) -> str:
    from uuid import UUID

    from prefect.client.orchestration import get_client

    deadline = time.monotonic() + seconds
    with get_client(sync_client=True) as client:
        while True:
            state = client.read_flow_run(UUID(str(run_id))).state
            name = state.type.value if state else "?"
            if name in wanted:
                return name
            assert name not in {"FAILED", "CRASHED", "CANCELLED"}, f"flow run {run_id} ended {name}"
            assert time.monotonic() < deadline, f"flow run {run_id} still {name} after {seconds:.0f} s"
            time.sleep(0.3)


def test_the_deployed_dispatcher_starts_one_review_run_per_breach(served: Any, gateway: Gateway, smtp: Mailbox,
                                                                   tmp_path: Path) -> None:
    org = organisation(tmp_path, kri="IRT>6")
    measure("IRT", 8.0)
    first = runs.start("risk-review-dispatch/risk-review-dispatch", {})
    assert _state_of(first.id, "COMPLETED") == "COMPLETED"
    mails(smtp, org.olive.email, "Risk review: re-score 1 risk", seconds=90)
    again = runs.start("risk-review-dispatch/risk-review-dispatch", {})
    assert _state_of(again.id, "COMPLETED") == "COMPLETED"
    time.sleep(3)
    assert len(smtp.messages(to=org.olive.email)) == 1, "the next day's dispatch starts nothing twice"
    [asked] = _rescores("kri")
    assert asked.occasion_id is not None and asked.step_id is not None


def test_preview_records_nothing(prefect_api: str, smtp: Mailbox, tmp_path: Path) -> None:
    organisation(tmp_path, kri="IRT>6")
    measure("IRT", 8.0)
    shown = risk_review_dispatch(preview=True)
    assert (shown.status, shown.breaches) == ("preview", ["R-2 IRT"])
    assert _rescores("kri") == []
