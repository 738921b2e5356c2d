"""The review's report as a reader gets it (the PDF's text), and the risk section of the operations report."""

from __future__ import annotations

import csv
import re
from datetime import timedelta
from pathlib import Path

from pypdf import PdfReader

from engine import periods
from flows.reporting.operations_report.flow import operations_report
from flows.risk.risk_review.flow import risk_review
from tests.conftest import Gateway, Mailbox
from tests.flows.background import finished, in_background
from tests.flows.risk.risk_review.organisation import Org, close_window, mails, organisation
from tests.links import answer_link


def _text(pdf: str) -> str:
    return re.sub(r"\s+", " ", " ".join(page.extract_text() or "" for page in PdfReader(pdf).pages))


def _reviewed(org: Org, gateway: Gateway, smtp: Mailbox) -> str:
    """This quarter's review: Olive moves R-1 down and R-2 up; the Director accepts R-2 and treats R-3."""
    risk_review()
    r1, r2 = mails(smtp, org.olive.email, "Risk review: re-score")
    answer_link(gateway.client, r1, {"decision": "rescore", "residual_likelihood": "2",
                                     "rationale": "Roof replaced in October"}).raise_for_status()
    answer_link(gateway.client, r2, {"decision": "rescore", "residual_likelihood": "5",
                                     "rationale": "Two attempted intrusions this quarter"}).raise_for_status()
    close_window(periods.quarter_of_day(periods.today()).name)
    thread, outcome = in_background(lambda: risk_review())
    ransomware, carrier = mails(smtp, org.director.email, "Decision needed")
    answer_link(gateway.client, ransomware, {
        "decision": "accept", "accepted_until": (periods.today() + timedelta(days=60)).isoformat(),
        "justification": "Cyber insurance renewed; EDR roll-out by February"}).raise_for_status()
    answer_link(gateway.client, carrier, {"decision": "treat", "action": "Contract a second haulier",
                                          "action_owner": org.omar.email}).raise_for_status()
    return str(finished(thread, outcome, "the review").report_pdf)


def test_the_report_shows_the_heat_maps_with_moves_the_risks_above_appetite_and_the_register(
        prefect_api: str, gateway: Gateway, smtp: Mailbox, tmp_path: Path) -> None:
    org = organisation(tmp_path)
    text = _text(_reviewed(org, gateway, smtp))
    quarter = periods.quarter_of_day(periods.today()).name
    assert f"Risk review {quarter}" in text
    assert "Inherent risk (before controls) — 4 risks: 1 Low, 0 Medium, 1 High, 2 Critical." in text
    assert "Residual risk (with its controls as they work today) — 4 risks: 1 Low, 1 Medium, 1 High, 1 Critical." \
        in text
    assert "R-2▲" in text.replace(" ", "") and "R-1▼" in text.replace(" ", ""), "each risk's move on the map"
    above = text[text.index("Top risks above appetite"):text.index("Register")]
    assert above.index("R-2 Ransomware") < above.index("R-3 Single carrier"), "the highest first"
    assert "accepted until" in above and "treatment assigned" in above
    assert "Two attempted intrusions this quarter" in above, "the owner's rationale"
    register = text[text.index("Register"):]
    assert register.index("R-2") < register.index("R-3") < register.index("R-1") < register.index("R-4")
    assert "re-scored" in register and "not due" in register
    assert "2 of 3 re-scores answered: 2 changed, 0 confirmed; 1 not answered" in text


def test_the_operations_report_carries_the_risk_section(prefect_api: str, gateway: Gateway, smtp: Mailbox,
                                                        tmp_path: Path) -> None:
    org = organisation(tmp_path)
    _reviewed(org, gateway, smtp)
    built = operations_report(period="this-month", send=False)
    text = _text(built.pdf)
    section = text[text.rindex("Risk"):]
    assert "4 active risks: 1 Low, 1 Medium, 1 High, 1 Critical (residual)." in text
    assert "2 above their category's appetite (1 accepted, 1 being treated, 0 undecided)" in text
    assert "R-2 Ransomware" in section and "R-3 Single carrier" in section
    with open(built.csv, newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row.get("section") == "risk"]
    figures = {row["item"]: row["value"] for row in rows}
    assert figures["risks above appetite"] == "2" and figures["residual moved up in the period"] == "1"


def test_a_decision_voided_by_a_re_score_says_what_it_was() -> None:
    """The register reads what the re-score undid (an acceptance and its date, a treatment), not 'decision void'."""
    from datetime import date

    from flows.risk.risk_review.section import _label
    from registry.risk import AcceptanceStatus, RiskAcceptance

    def voided(decision: str | None, reason: str = "re-scored by Ivan IT (step 9)") -> str:
        return _label(RiskAcceptance(risk_id=1, assessment_id=1, status=AcceptanceStatus.voided, decision=decision,
                                     accepted_until=date(2027, 3, 31) if decision == "accept" else None,
                                     void_reason=reason))

    assert voided("accept") == "acceptance until 31 Mar 2027 void: re-scored"
    assert voided("treat") == "treatment void: re-scored"
    assert voided(None) == "question to the Director void: re-scored"
    assert voided(None, "not decided: the question expired") == "not decided in time"
