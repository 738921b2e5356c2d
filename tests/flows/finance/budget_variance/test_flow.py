"""The monthly budget variance end to end on real parts: a Prefect test server, SMTP on loopback, the gateway over
HTTP answering the owners' and the director's links, the pack read back from its CSV and its PDF."""

from __future__ import annotations

import csv
import io
import time
from collections import Counter
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import UUID

from pypdf import PdfReader
from sqlalchemy import update
from sqlmodel import col, select

from engine import periods
from engine.sweep import sweep
from flows.finance.budget_variance.flow import BudgetOutcome, budget_variance
from registry import (
    BudgetExplanation,
    CorrectiveAction,
    Finding,
    HumanStep,
    LineKind,
    Notification,
    Occasion,
    OccasionStatus,
    Person,
    StepStatus,
    session,
)
from registry.clock import utcnow
from registry.trail import verify
from tests import factories
from tests.conftest import Gateway, Mailbox
from tests.flows.background import in_background
from tests.links import answer_link, links_in

MONTH = "2026-11"
OCT, NOV, DEC = date(2026, 10, 1), date(2026, 11, 1), date(2026, 12, 1)


def _organisation() -> dict[str, Any]:
    """Dana directs; Olive owns Operations (two lines over budget, one a little over), Omar owns Sales (its income
    short of budget, marketing a little over). Mia manages both cost centres without being either owner's manager.
    """
    with session() as db:
        dana = factories.person(db, "Dana Director")
        dana.roles = ["director"]
        db.add(dana)
        mia = factories.person(db, "Mia Manager", manager=dana)
        olive = factories.person(db, "Olive Owner", manager=dana)
        omar = factories.person(db, "Omar Owner", manager=dana)
        ops = factories.cost_centre(db, owner=olive, manager=mia, code="OPS")
        sales = factories.cost_centre(db, owner=omar, manager=mia, code="SAL")
        for month in (OCT, NOV, DEC):
            factories.budget_line(db, ops, month, "2000.00", account="6100")
        factories.actual(db, ops, date(2026, 10, 20), "1800.00", account="6100")
        factories.actual(db, ops, date(2026, 11, 12), "3400.00", account="6100")
        factories.budget_line(db, ops, NOV, "5000.00", account="6200")
        factories.actual(db, ops, date(2026, 11, 3), "6500.00", account="6200")
        factories.budget_line(db, ops, NOV, "1000.00", account="6300")
        factories.actual(db, ops, date(2026, 11, 30), "1050.00", account="6300")
        factories.budget_line(db, sales, NOV, "20000.00", account="4000", kind=LineKind.income)
        factories.actual(db, sales, date(2026, 11, 28), "15000.00", account="4000")
        factories.budget_line(db, sales, NOV, "3000.00", account="6400")
        factories.actual(db, sales, date(2026, 11, 14), "3200.00", account="6400")
        vendor = factories.vendor(db, owner=olive)
        factories.purchase_request(db, vendor, "500.00", centre=ops, account="6100",
                                   created_at=utcnow().replace(year=2026, month=11, day=15))
        return {"dana": dana, "mia": mia, "olive": olive, "omar": omar}


def _close_the_window() -> None:
    """The justifications' deadline passes: the month's (its occasion's) and its steps'."""
    with session() as db:
        ids = list(db.exec(select(BudgetExplanation.step_id)))
        db.execute(update(HumanStep).where(col(HumanStep.id).in_(ids))
                   .values(due_at=utcnow() - timedelta(minutes=1)))
        db.execute(update(Occasion).where(col(Occasion.process) == "budget-variance", col(Occasion.due_at).is_not(None))
                   .values(due_at=utcnow() - timedelta(minutes=1)))


def _signoff_link(smtp: Mailbox, director: Person, count: int = 1) -> str:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        mails = [m for m in smtp.messages(to=director.email) if m.subject.startswith("Sign-off needed")]
        if len(mails) >= count:
            return links_in(mails[0].html)[0]  # the newest first
        time.sleep(0.2)
    raise AssertionError("no sign-off request reached the director")


def _artifact(key: str, flow_run_id: str) -> str:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        [artifact] = client.read_artifacts(artifact_filter=ArtifactFilter(
            key=ArtifactFilterKey(any_=[key]), flow_run_id=ArtifactFilterFlowRunId(any_=[UUID(flow_run_id)])))
    return str(artifact.data)


def _csv_rows(path: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(Path(path).read_text(encoding="utf-8"))))


def test_the_monthly_variance_end_to_end(prefect_api: str, any_db: str, gateway: Gateway, smtp: Mailbox) -> None:
    """On both databases: the justifications' queries, the pack's and the sign-off's."""
    org = _organisation()
    due_on = periods.today() + timedelta(days=20)

    opened = budget_variance(month=MONTH)
    assert (opened.status, opened.lines, opened.material, opened.missing) == ("collecting", 5, 3, 3)

    asks = smtp.wait_for(2)
    assert Counter(m.to for m in asks) == {org["olive"].email: 1, org["omar"].email: 1}, "one digest per owner"
    [olive_mail] = smtp.messages(to=org["olive"].email)
    assert olive_mail.subject.startswith(f"Budget justification needed: {periods.parse(MONTH, NOV).label} — 2 lines")
    assert "£1,400.00 over budget (70.0%)" in olive_mail.text and "6300" not in olive_mail.text
    [omar_mail] = smtp.messages(to=org["omar"].email)
    assert "£5,000.00 under budget (25.0%)" in omar_mail.text, "an income short of budget is unfavourable"
    travel, software = links_in(olive_mail.html)

    page = gateway.client.get(travel)
    assert "Revised forecast to year end" in page.text and "£3,400.00" in page.text
    refused = answer_link(gateway.client, software, {"explanation": "Licences", "nature": "recurring",
                                                     "revised_forecast": "12,000", "corrective_action_needed": "true"})
    assert refused.status_code == 422 and "Say what the corrective action is." in refused.text
    assert "Give the day the corrective action will be done by." in refused.text
    with session() as db:
        assert db.exec(select(HumanStep).where(HumanStep.status == StepStatus.answered)).all() == []

    assert answer_link(gateway.client, travel, {"explanation": "Two unplanned site visits", "nature": "one-off",
                                                "revised_forecast": "£7,600.00"}).status_code == 200
    assert answer_link(gateway.client, software, {
        "explanation": "Seat count grew with the new team", "nature": "recurring", "revised_forecast": "12,000",
        "corrective_action_needed": "true", "action_description": "Renegotiate the licence tier",
        "action_due": due_on.isoformat()}).status_code == 200

    again = budget_variance(month=MONTH)
    assert (again.status, again.received, again.missing) == ("collecting", 2, 1)
    assert len(smtp.messages()) == 2, "a re-run inside the window asks and sends nothing again"

    _close_the_window()
    swept = sweep()
    assert len(swept.escalated) == 1
    escalations = [m for m in smtp.wait_for(5) if m.to in (org["mia"].email, org["dana"].email)]
    assert {m.to for m in escalations} == {org["mia"].email, org["dana"].email}, \
        "the cost centre's manager is told besides the owner's"

    thread, outcome = in_background(lambda: budget_variance(month=MONTH))
    approve = _signoff_link(smtp, org["dana"])
    signoff_page = gateway.client.get(approve)
    assert "Sign off the budget variance pack" in signoff_page.text and "Pack (PDF) SHA-256" in signoff_page.text
    attached = gateway.client.get(approve + "/attachment")
    assert attached.status_code == 200 and "Justifications missing" in attached.text

    with session() as db:
        occasion = db.exec(select(Occasion).where(Occasion.process == "budget-variance")).one()
        finding = db.exec(select(Finding)).one()
        action = db.exec(select(CorrectiveAction)).one()
    assert occasion.status == OccasionStatus.awaiting_signoff and occasion.report_path
    assert (finding.origin_type, finding.code, finding.severity.value) == ("budget_explanation", "overspend", "high")
    assert "OPS" in finding.description and "6200" in finding.description
    assert action.owner_id == org["olive"].id and action.description == "Renegotiate the licence tier"
    assert periods.local_date(action.due_at, "Europe/London") == due_on
    assert finding.verifier_id == org["mia"].id
    told = [m for m in smtp.messages(to=org["olive"].email) if m.subject.startswith("Corrective action")]
    assert len(told) == 1 and "Renegotiate the licence tier" in told[0].text

    pdf = Path(occasion.report_path or "")
    rows = _csv_rows(str(pdf.with_name("figures-r1.csv")))
    lines = {(r["cost_centre"], r["account"]): r for r in rows if r["level"] == "line"}
    travel_row = lines[("OPS", "6100")]
    assert (travel_row["budget"], travel_row["actual"], travel_row["variance"], travel_row["variance_pct"]) == \
        ("2000.00", "3400.00", "1400.00", "70.00")
    assert (travel_row["budget_ytd"], travel_row["actual_ytd"], travel_row["variance_ytd"]) == \
        ("4000.00", "5200.00", "1200.00")
    assert (travel_row["committed_ytd"], travel_row["remaining"], travel_row["budget_year"]) == \
        ("500.00", "300.00", "6000.00")
    assert (travel_row["forecast"], travel_row["forecast_by"], travel_row["justification"]) == \
        ("7600.00", "owner", "received")
    assert lines[("SAL", "4000")]["justification"] == "missing"
    assert lines[("OPS", "6300")]["justification"] == ""
    totals = {r["kind"]: r for r in rows if r["level"] == "total"}
    assert Decimal(totals["expense"]["actual"]) == Decimal("14150.00")
    assert Decimal(totals["income"]["variance"]) == Decimal("-5000.00")
    assert Decimal(totals["net"]["variance"]) == Decimal("-5000.00") - Decimal("3150.00")
    centre_rows = [r for r in rows if r["level"] == "cost_centre" and r["cost_centre"] == "OPS"]
    assert {r["kind"] for r in centre_rows} == {"expense", "net"}

    with session() as db:
        waiting = db.get(HumanStep, occasion.signoff_step_id)
    assert waiting is not None and waiting.flow_run_id
    summary = _artifact("budget-variance-pack", waiting.flow_run_id)
    assert "Budget variance pack · November 2026 (round 1)" in summary and "missing 1" in summary
    assert "SAL · 4000 (Omar Owner)" in summary and occasion.report_sha256 in summary

    text = "\n".join(page.extract_text() for page in PdfReader(pdf).pages)
    assert "Budget variance pack" in text and "November 2026" in text
    assert "Two unplanned site visits" in text and "Renegotiate the licence tier" in text
    assert "Justifications missing" in text and "escalated to" in text and "Mia Manager" in text

    assert answer_link(gateway.client, approve, {"decision": "approve", "comment": "Agreed."}).status_code == 200
    thread.join(timeout=60)
    assert "error" not in outcome, outcome.get("error")
    result: BudgetOutcome = outcome["result"]
    assert (result.status, result.received, result.missing, result.findings) == ("closed", 2, 1, 1)
    assert result.pack == str(pdf)

    sent = len(smtp.messages())
    assert budget_variance(month=MONTH).detail == "already signed off"
    with session() as db:
        closed = db.exec(select(Occasion).where(Occasion.process == "budget-variance")).one()
        keys = list(db.exec(select(Notification.idempotency_key)))
        assert verify(db).ok
    assert closed.status == OccasionStatus.closed and closed.closed_at is not None
    assert len(smtp.messages()) == sent and len(keys) == len(set(keys))


def test_preview_sends_and_keeps_nothing(prefect_api: str, smtp: Mailbox) -> None:
    _organisation()
    result = budget_variance(month=MONTH, preview=True)
    assert result.status == "preview" and result.material == 3 and "2 justification request(s)" in result.detail
    with session() as db:
        assert db.exec(select(Occasion)).all() == [] and db.exec(select(Notification)).all() == []
    assert smtp.messages() == []


def test_a_rejected_pack_tells_the_owners_and_the_next_round_carries_a_late_justification(
        prefect_api: str, gateway: Gateway, smtp: Mailbox) -> None:
    org = _organisation()
    budget_variance(month=MONTH)
    smtp.wait_for(2)
    [omar_mail] = smtp.messages(to=org["omar"].email)
    [omar_link] = links_in(omar_mail.html)
    _close_the_window()

    thread, outcome = in_background(lambda: budget_variance(month=MONTH))
    first = _signoff_link(smtp, org["dana"])
    assert answer_link(gateway.client, first, {"decision": "reject",
                                               "comment": "Sales must explain the shortfall."}).status_code == 200
    thread.join(timeout=60)
    assert outcome["result"].status == "changes_requested", outcome
    told = [m for m in smtp.messages() if "sign-off rejected" in m.subject]
    assert {m.to for m in told} == {org["olive"].email, org["omar"].email}
    assert all("Sales must explain the shortfall." in m.text for m in told)
    assert all("The pack is rebuilt for a new sign-off on " in m.text for m in told), "the owners know by when"
    assert "new round: " in outcome["result"].detail, "the new round's run is scheduled, not left to someone"
    assert "SAL · 4000" in next(m.text for m in told if m.to == org["omar"].email)

    late = answer_link(gateway.client, omar_link, {
        "explanation": "A large order slipped into December", "nature": "one-off", "revised_forecast": "20000",
        "corrective_action_needed": "true", "action_description": "Chase the order's signature",
        "action_due": (periods.today() + timedelta(days=5)).isoformat()})
    assert late.status_code == 200, "a justification still owed can be given after the pack"

    thread, outcome = in_background(lambda: budget_variance(month=MONTH))
    second = _signoff_link(smtp, org["dana"], count=2)
    assert second != first and gateway.client.get(first).status_code == 409, "the first round's link is dead"
    with session() as db:
        occasion = db.exec(select(Occasion).where(Occasion.process == "budget-variance")).one()
        raised = list(db.exec(select(Finding)))
    assert occasion.signoff_round == 2 and Path(occasion.report_path or "").name == "pack-r2.pdf"
    first_pack = Path(occasion.report_path or "").with_name("pack-r1.pdf")
    assert first_pack.is_file(), "round 1's pack is kept"
    before_the_sweep = " ".join(" ".join(page.extract_text().split()) for page in PdfReader(first_pack).pages)
    assert "overdue; being escalated to Dana Director, Mia Manager" in before_the_sweep
    rows = _csv_rows(str(Path(occasion.report_path or "").with_name("figures-r2.csv")))
    sales = next(r for r in rows if (r["level"], r["cost_centre"], r["account"]) == ("line", "SAL", "4000"))
    assert (sales["justification"], sales["forecast"]) == ("received", "20000.00")
    assert len(raised) == 1 and "SAL" in raised[0].description and "4000" in raised[0].description, \
        "the late justification's corrective action is raised with the new round"
    assert answer_link(gateway.client, second, {"decision": "approve", "comment": ""}).status_code == 200
    thread.join(timeout=60)
    assert outcome["result"].status == "closed", outcome


def test_a_year_with_no_books_opens_nothing_and_says_what_to_import(prefect_api: str, smtp: Mailbox) -> None:
    result = budget_variance(month=MONTH)
    assert result.status == "no data" and "ops import cost-centres" in result.detail
    with session() as db:
        assert db.exec(select(Occasion)).all() == []
    assert smtp.messages() == []
