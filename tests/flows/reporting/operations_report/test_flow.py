"""The operations report end to end: a real registry, Prefect server, SMTP server, WeasyPrint and Chromium."""

from __future__ import annotations

import csv
import json
import mailbox
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any
from uuid import UUID

import pypdfium2 as pdfium
import pytest
from prefect.exceptions import ParameterTypeError
from pydantic import ValidationError
from pypdf import PdfReader
from sqlmodel import col, func, select

from engine import processes
from engine.processes import Due, Process
from engine.settings import get_settings
from flows.reporting.operations_report.flow import ReportParameters, operations_report
from flows.reporting.operations_report.tasks import KPI_ARTIFACT, MARKDOWN_ARTIFACT
from registry import (
    ActionStatus,
    AuditEvent,
    ContinuityPlan,
    Control,
    CorrectiveAction,
    Criticality,
    Direction,
    DrillProgram,
    Facility,
    Finding,
    FindingStatus,
    HumanStep,
    KpiDefinition,
    KpiMeasurement,
    Notification,
    Occasion,
    OccasionStatus,
    OperationsReport,
    Person,
    PurchaseRequest,
    PurchaseRequestLine,
    Standing,
    StepStatus,
    VendorScorecard,
    session,
)
from registry.clock import utcnow
from registry.trail import verify
from tests import browser, factories
from tests.conftest import Mailbox

PERIOD = "2026-10"
SECTIONS = ("KPIs against target", "Open findings and corrective actions by age", "Approval and request latency",
            "Vendor standings", "Inventory health", "Obligations due in the next 30 days")
CHART_BAND = (231, 240, 250)  # the shaded period behind every KPI chart: drawn nowhere else
CHART_FINDINGS = (232, 89, 12)  # the open-findings bars


@dataclass
class Seeded:
    readers: list[Person]
    not_readers: list[Person]


def _person(db: Any, name: str, roles: list[str], active: bool = True) -> Person:
    person = factories.person(db, name, active=active)
    person.roles = roles
    db.add(person)
    db.flush()
    return person


def _kpi(db: Any, code: str, name: str, unit: str, target: float, direction: Direction,
         values: dict[str, float], owner: Person | None = None, active: bool = True) -> None:
    kpi = KpiDefinition(code=code, name=name, unit=unit, target=target, direction=direction, active=active,
                        owner_id=owner.id if owner else None)
    db.add(kpi)
    db.flush()
    db.add_all(KpiMeasurement(kpi_id=kpi.id or 0, measured_on=date.fromisoformat(day), value=value)
               for day, value in values.items())


def _origin(number: int) -> dict[str, Any]:
    """A finding's origin made for the test: the report reads findings whatever raised them."""
    return {"origin_type": "test", "origin_id": number, "code": "test", "process": "test-process"}


def _step(db: Any, person: Person, kind: str, form: str, asked: datetime, hours: float | None,
          due_hours: float = 24) -> None:
    db.add(HumanStep(key=f"step-{asked.isoformat()}-{hours}-{form}", kind=kind, form=form, title="t",
                     subject_type="test", subject_id=1, person_id=person.id or 0, created_at=asked,
                     due_at=asked + timedelta(hours=due_hours), expires_at=asked + timedelta(hours=due_hours),
                     status=StepStatus.answered if hours is not None else StepStatus.pending,
                     answered_at=asked + timedelta(hours=hours) if hours is not None else None))


def _seed() -> Seeded:
    """Two KPIs measured in October (one met, one missed), one not; findings of every age; answered steps;
    vendors, stock and a cadence of every kind."""
    now = utcnow()
    far = f"0 10 1 {(now.month + 5) % 12 + 1} *"  # yearly, on a day five or six months away: never due soon
    with session() as db:
        dora = _person(db, "Dora Director", ["director", "operations_report"])
        clara = _person(db, "Clara Compliance", ["compliance_manager", "operations_report"])
        gone = _person(db, "Gus Gone", ["operations_report"], active=False)
        omar = _person(db, "Omar Owner", [])
        _kpi(db, "OTD", "On-time delivery", "%", 95, Direction.higher_is_better, owner=dora,
             values={"2026-09-13": 90, "2026-09-27": 92, "2026-10-04": 96, "2026-10-18": 95, "2026-10-25": 97})
        _kpi(db, "IRT", "Incident response time", "h", 4, Direction.lower_is_better,
             values={"2026-09-27": 3.0, "2026-10-11": 5.0, "2026-10-25": 4.6})
        _kpi(db, "TRAIN", "Training completion", "%", 90, Direction.higher_is_better, values={"2026-08-30": 85})
        _kpi(db, "OLD", "Retired measure", "%", 50, Direction.higher_is_better, values={"2026-10-04": 1},
             active=False)

        old = Finding(**_origin(1), severity=Criticality.high, description="Backups never restored",
                      created_at=now - timedelta(days=100))
        recent = Finding(**_origin(2), severity=Criticality.medium, description="Badge list stale",
                         created_at=now - timedelta(days=40))
        closed = Finding(**_origin(3), severity=Criticality.low, description="Fixed long ago",
                         status=FindingStatus.closed, created_at=now - timedelta(days=200),
                         closed_at=datetime(2026, 10, 20, 9, tzinfo=UTC))
        db.add_all([old, recent, closed])
        db.flush()
        db.add_all([CorrectiveAction(finding_id=old.id or 0, owner_id=omar.id or 0, description="Restore a backup",
                                     due_at=now - timedelta(days=10), created_at=now - timedelta(days=99)),
                    CorrectiveAction(finding_id=recent.id or 0, owner_id=omar.id or 0, description="Review badges",
                                     due_at=now + timedelta(days=5), created_at=now - timedelta(days=39))])

        october = datetime(2026, 10, 12, 9, tzinfo=UTC)
        for hours in (2, 4, 30):
            _step(db, clara, "approval", "approval", october, hours)
        _step(db, omar, "form", "attestation", october, 50, due_hours=72)
        _step(db, omar, "approval", "approval", datetime(2026, 9, 10, tzinfo=UTC), 1)  # answered in September
        _step(db, omar, "approval", "approval", october, None)  # still pending

        star = factories.vendor(db, owner=dora, standing=Standing.preferred, cadence=far,
                                contract_end=now.date() + timedelta(days=20))
        factories.vendor(db, owner=dora, standing=Standing.probation, cadence=far)
        db.add(VendorScorecard(vendor_id=star.id or 0, period="2026-Q3", deliveries=12, score=92.5,
                               standing_before=Standing.preferred, standing_proposed=Standing.preferred))
        empty = factories.inventory_item(db, star, on_hand=0, reorder_point=10)
        low = factories.inventory_item(db, star, on_hand=3, reorder_point=10)
        factories.inventory_item(db, star, on_hand=80, reorder_point=10, unit_cost="2.50")
        request = PurchaseRequest(key="r-1", vendor_id=star.id or 0, requester_id=dora.id or 0,
                                  amount=Decimal("40"), approvers=[])
        db.add(request)
        db.flush()
        db.add(PurchaseRequestLine(request_id=request.id or 0, item_id=low.id or 0, quantity=50,
                                   unit_cost=Decimal("4")))
        assert empty.id

        framework = factories.framework(db, manager=clara, owners=[omar], cadence="0 9 1 * *")
        control = db.exec(select(Control).where(Control.framework_id == framework.id)).one()
        control.last_tested_at = now - timedelta(days=45)  # a monthly test: the next one has passed
        db.add(control)
        facility = Facility(code="HQ", name="Head office")
        db.add(facility)
        db.flush()
        db.add(ContinuityPlan(code="IT-DR", name="IT recovery", owner_id=clara.id, rto_minutes=240, rpo_minutes=60,
                              review_cadence="0 9 * * 1", last_reviewed_at=now))
        db.add(DrillProgram(facility_id=facility.id or 0, kind="fire", title="Fire evacuation",
                            cadence=far, last_run_at=now - timedelta(days=30)))
    return Seeded(readers=[dora, clara], not_readers=[gone, omar])


def _mails(to: str) -> list[EmailMessage]:
    box = mailbox.Maildir(get_settings().mailbox_dir, create=False)
    parsed = [BytesParser(policy=policy.default).parsebytes(box.get_bytes(key)) for key in box.iterkeys()]
    return [m for m in parsed if isinstance(m, EmailMessage) and to.lower() in str(m["X-Envelope-To"]).lower()]


def _figures(path: str) -> dict[tuple[str, str, str], dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return {(r["section"], r["item"], r["measure"]): r for r in csv.DictReader(handle)}


def _colour_pixels(pdf_path: str, *colours: tuple[int, int, int]) -> list[int]:
    """For each colour, how many pixels of exactly it the PDF's pages show, rendered as pictures."""
    document = pdfium.PdfDocument(pdf_path)
    try:
        counts: dict[tuple[int, int, int], int] = {}
        for page in document:
            image = page.render(scale=1).to_pil().convert("RGB")
            for n, rgb in image.getcolors(1 << 24) or []:
                counts[rgb] = counts.get(rgb, 0) + n
        return [counts.get(colour, 0) for colour in colours]
    finally:
        document.close()


def _artifact(key: str, flow_run_id: UUID) -> Any:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        [artifact] = client.read_artifacts(artifact_filter=ArtifactFilter(
            key=ArtifactFilterKey(any_=[key]), flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))
    return artifact.data


def test_the_monthly_report_shows_every_section_prints_charts_and_mails_the_list_once(
        prefect_api: str, any_db: str, smtp: Mailbox) -> None:
    seeded = _seed()
    state = operations_report(period=PERIOD, return_state=True)
    outcome = state.result()
    assert (outcome.key, outcome.period, outcome.first_day, outcome.last_day) == (
        "monthly-2026-10", "October 2026", date(2026, 10, 1), date(2026, 10, 31))
    assert (outcome.kpis, outcome.kpis_met, outcome.recipients, outcome.sent) == (3, 1, 2, 2)
    folder = get_settings().data_dir.resolve() / "reports" / "operations" / "monthly-2026-10"
    assert {Path(p).parent for p in (outcome.html, outcome.pdf, outcome.csv)} == {folder}
    assert {p.name for p in folder.iterdir()} == {"report.html", "report.pdf", "figures.csv", "kpi-trends.png",
                                                  "findings-age.png"}

    # The CSV holds the figures computed from what was seeded.
    figures = _figures(outcome.csv)
    otd, irt, train = (figures[("kpis", item, "period mean")] for item in
                       ("OTD On-time delivery", "IRT Incident response time", "TRAIN Training completion"))
    assert (float(otd["value"]), otd["unit"], float(otd["target"]), otd["status"]) == (96.0, "%", 95.0, "met")
    assert (float(irt["value"]), irt["status"]) == (4.8, "missed")
    assert (train["value"], train["status"]) == ("", "no data")
    assert not any("OLD" in item for _, item, _ in figures), "an inactive KPI is left out"
    change = figures[("kpis", "OTD On-time delivery", "change")]
    assert (float(change["value"]), change["status"]) == (5.0, "improving")
    assert figures[("kpis", "IRT Incident response time", "change")]["status"] == "worsening"
    assert figures[("findings", "over 90 days", "open findings")]["value"] == "1"
    assert figures[("findings", "over 90 days", "overdue corrective actions")]["value"] == "1"
    assert figures[("findings", "31–60 days", "open findings")]["value"] == "1"
    assert figures[("summary", "findings", "open")]["value"] == "2", "the closed finding is not counted"
    assert figures[("summary", "findings", "closed in the period")]["value"] == "1", "closed in October"
    assert figures[("summary", "corrective actions", "awaiting verification")]["value"] == "0"
    approvals = {m: figures[("latency", "approval approval", m)]["value"]
                 for m in ("answered", "median", "90th percentile", "answered after due")}
    assert approvals == {"answered": "3", "median": "4.0", "90th percentile": "30.0", "answered after due": "1"}
    assert figures[("latency", "form attestation", "median")]["value"] == "50.0"
    assert figures[("inventory", "items", "out of stock")]["value"] == "1"
    assert figures[("inventory", "items", "covered by open requests")]["value"] == "1"
    assert figures[("vendors", "preferred", "vendors")]["value"] == "1"
    obligations = sorted((item.split(":")[0], row["status"]) for (section, item, _), row in figures.items()
                         if section == "obligations")
    assert obligations == [("Contract end", "due"), ("Control test", "overdue"), ("Corrective action", "due"),
                           ("Corrective action", "overdue"), ("Plan review", "due")], "no drill or vendor review"

    # The PDF reads as the report: its sections and figures as text, its charts as pictures.
    reader = PdfReader(outcome.pdf)
    text = " ".join(page.extract_text() for page in reader.pages)
    for title in (*SECTIONS, "October 2026", "On-time delivery", "96.0", "4.8", "missed", "Backups never restored"):
        assert title in text, title
    # WeasyPrint shares one resource dictionary between pages: count the distinct pictures.
    assert len({(image.name, image.image.size if image.image else None)
                for page in reader.pages for image in page.images}) == 2
    band, bars = _colour_pixels(outcome.pdf, CHART_BAND, CHART_FINDINGS)
    assert band > 1_000 and bars > 200, (band, bars)

    # One message to each active reader: the PDF attached, each chart inline and referenced from the HTML.
    for reader_person in seeded.readers:
        [mail] = _mails(reader_person.email)
        assert mail["Subject"] == "Operations report October 2026: 1 of 2 KPIs on target"
        html = mail.get_body(("html",))
        assert html is not None
        body = html.get_content()
        text_part = mail.get_body(("plain",))
        assert text_part is not None
        stock = f"{figures[('inventory', 'items', 'at or below reorder point')]['value']} of " \
                f"{figures[('inventory', 'items', 'stocked')]['value']}"
        for shown in (re.sub(r"<[^>]+>", "", body), text_part.get_content()):
            assert stock in shown and "built-in method" not in shown, "the stock line reads as figures"
        parts = list(mail.walk())
        [pdf] = [p for p in parts if p.get_content_type() == "application/pdf"]
        assert pdf.get_filename() == "report.pdf" and pdf.get_payload(decode=True) == Path(outcome.pdf).read_bytes()
        images = {str(p["Content-ID"]).strip("<>"): p for p in parts if p.get_content_maintype() == "image"}
        assert set(images) == {"kpi-trends.png", "findings-age.png"}
        for content_id, image in images.items():
            assert f'src="cid:{content_id}"' in body
            assert image.get_content_disposition() == "inline"
            assert image.get_payload(decode=True) == (Path(outcome.pdf).parent / content_id).read_bytes()
    for other in seeded.not_readers:
        assert _mails(other.email) == []

    # The Prefect UI shows the latest report.
    run_id = state.state_details.flow_run_id
    assert run_id is not None
    assert "October 2026" in _artifact(MARKDOWN_ARTIFACT, run_id)
    table = json.loads(_artifact(KPI_ARTIFACT, run_id))
    assert [(r["KPI"], r["status"]) for r in table] == [("IRT Incident response time", "missed"),
                                                         ("OTD On-time delivery", "met"),
                                                         ("TRAIN Training completion", "no data")]

    # Rebuilt for the same period: new files, the same row, nothing sent twice.
    with session() as db:
        queued = db.exec(select(func.count()).select_from(Notification)).one()
    again = operations_report(period=" 2026-10 ")
    assert (again.key, again.recipients, again.sent) == ("monthly-2026-10", 2, 0)
    with session() as db:
        assert db.exec(select(func.count()).select_from(Notification)).one() == queued
        [row] = db.exec(select(OperationsReport))
        built = list(db.exec(select(AuditEvent).where(AuditEvent.action == "operations_report.built")
                             .order_by(col(AuditEvent.id))))
        assert verify(db).ok
    assert row.pdf_sha256 == again.pdf_sha256 and row.pdf_path == outcome.pdf
    # The period is an occasion of the process: one however often it is built, holding the latest PDF by its
    # hash, closed because October is over.
    with session() as db:
        [occasion] = db.exec(select(Occasion).where(Occasion.process == "operations-report"))
    assert (occasion.key, occasion.status, occasion.report_path) == ("monthly-2026-10", OccasionStatus.closed,
                                                                      outcome.pdf)
    assert occasion.report_sha256 == again.pdf_sha256
    assert occasion.period_start is not None and occasion.period_start.date() in (date(2026, 9, 30),
                                                                                  date(2026, 10, 1))
    assert [e.data["pdf_sha256"] for e in built] == [outcome.pdf_sha256, again.pdf_sha256]
    assert all(len(_mails(p.email)) == 1 for p in seeded.readers)


def test_an_empty_registry_still_gets_a_report_whose_sections_say_there_is_no_data(
        prefect_api: str, registry_db: str) -> None:
    outcome = operations_report(period="last-week")
    assert (outcome.kpis, outcome.recipients, outcome.sent) == (0, 0, 0)
    text = " ".join(page.extract_text() for page in PdfReader(outcome.pdf).pages)
    for sentence in ("No KPIs are defined.", "No open findings or corrective actions.",
                     "No approvals or requests were answered in this period.", "No vendors in the registry.",
                     "No inventory items in the registry.", "No obligations fall due in the next 30 days.",
                     *SECTIONS):
        assert sentence in text, sentence
    folder = Path(outcome.pdf).parent
    assert sorted(p.name for p in folder.iterdir()) == ["figures.csv", "report.html", "report.pdf"]
    assert _figures(outcome.csv)[("summary", "KPIs", "met")]["value"] == "0"

    with session() as db:  # KPIs defined but none measured in the period
        db.add(KpiDefinition(code="OTD", name="On-time delivery", unit="%", target=95,
                             direction=Direction.higher_is_better))
    html = Path(operations_report(period="last-week", send=False).html).read_text()
    assert "No KPI measurements in this period." in html and "<img" not in html


def test_a_period_that_is_not_one_gives_a_clear_error(prefect_api: str, registry_db: str) -> None:
    with pytest.raises(ValidationError, match="there is no month 13. Use last-week, this-week"):
        ReportParameters(period="2026-13")
    with pytest.raises(ValidationError, match="ends .2026-01-01. before it starts"):
        ReportParameters(period="2026-03-31..2026-01-01")
    with pytest.raises(ParameterTypeError, match="period 'next-month' is not one of last-week"):
        operations_report(period="next-month")  # as the API would pass it
    with session() as db:
        assert db.exec(select(func.count()).select_from(OperationsReport)).one() == 0


@pytest.mark.browser
def test_the_html_report_shows_its_charts_in_chromium(prefect_api: str, registry_db: str, tmp_path: Path) -> None:
    with session() as db:
        _kpi(db, "OTD", "On-time delivery", "%", 95, Direction.higher_is_better,
             values={"2026-10-04": 96, "2026-10-18": 93})
        db.add(Finding(**_origin(1), severity=Criticality.high, description="Open",
                       created_at=utcnow() - timedelta(days=3)))
    outcome = operations_report(period=PERIOD, send=False)
    with browser.chromium(tmp_path / "chromium-profile") as chromium:
        page = chromium.new_page()
        page.goto(Path(outcome.html).as_uri())
        page.wait_for_load_state("load")
        assert page.locator("h1").inner_text() == "October 2026"
        images = page.evaluate("() => Array.from(document.images).map("
                               "i => [i.getAttribute('src'), i.complete, i.naturalWidth, i.clientWidth])")
    assert [src for src, *_ in images] == ["kpi-trends.png", "findings-age.png"]
    assert all(complete and natural > 1000 and shown > 300 for _, complete, natural, shown in images), images


def test_obligations_are_what_each_process_declares_and_actions_count_by_their_status(
        prefect_api: str, registry_db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A process of the test's own puts two things on the calendar; the report lists what falls in its horizon,
    names the owner, and reads no process's tables. Actions count by status: one reported done awaits its
    verifier (not overdue, owed by nobody), one verified this month closed its finding."""
    now = utcnow()
    asked: list[datetime] = []
    with session() as db:
        pat = _person(db, "Pat Planner", [])
        pat_id = pat.id

    def boiler_services(db: Any, horizon: datetime) -> list[Due]:
        asked.append(horizon)
        return [Due("Boiler service", "Boiler B-1", pat_id, now + timedelta(days=3)),
                Due("Boiler service", "Boiler B-2", None, now - timedelta(days=2)),
                Due("Boiler service", "Boiler B-9", None, now + timedelta(days=45))]

    declared = Process(name="boiler-service", title="Boiler service", actor="boiler-service",
                       obligations=boiler_services)
    monkeypatch.setattr(processes, "discover", lambda: {declared.name: declared})
    with session() as db:
        done = Finding(**_origin(1), severity=Criticality.high, description="Boiler log missing")
        settled = Finding(**_origin(2), severity=Criticality.low, description="Label faded",
                          status=FindingStatus.closed, closed_at=now)
        db.add_all([done, settled])
        db.flush()
        db.add_all([CorrectiveAction(finding_id=done.id or 0, owner_id=pat_id or 0, description="Keep the log",
                                     due_at=now - timedelta(days=1), status=ActionStatus.done, done_at=now),
                    CorrectiveAction(finding_id=settled.id or 0, owner_id=pat_id or 0, description="Relabel",
                                     due_at=now - timedelta(days=1), status=ActionStatus.verified,
                                     verified_at=now)])

    outcome = operations_report(period="this-month", send=False)

    assert len(asked) == 1 and timedelta(days=30) <= asked[0] - now < timedelta(days=30, minutes=5)
    figures = _figures(outcome.csv)
    obligations = sorted((item, row["status"], row["detail"].split("; ")[1]) for (section, item, _), row
                         in figures.items() if section == "obligations")
    assert obligations == [("Boiler service: Boiler B-1", "due", "Pat Planner"),
                           ("Boiler service: Boiler B-2", "overdue", "")], "no action is owed: one done, one verified"
    summary = {(item, measure): row["value"] for (section, item, measure), row in figures.items()
               if section == "summary"}
    assert (summary[("findings", "open")], summary[("findings", "closed in the period")]) == ("1", "1")
    assert (summary[("corrective actions", "open")], summary[("corrective actions", "overdue")]) == ("1", "0")
    assert summary[("corrective actions", "verified in the period")] == "1"
    assert summary[("corrective actions", "awaiting verification")] == "1"
    html = Path(outcome.html).read_text()
    assert "1 finding closed and 1 corrective action verified effective; 1 reported done awaits verification" in html
