"""The report as a new reader sees it (issue 14), in a real Chromium and as the PDF's pages rendered to pictures:
a month not yet measured is no failure, arrows point the way the number moved, the approval tile counts
approvals, a vendor's score is the latest it earned or says why there is none, page 1 holds KPI charts.

Screenshots and page pictures go to $OPS_TEST_SCREENSHOTS when set (to look at them), else the test's tmp_path."""

from __future__ import annotations

import os
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pypdfium2 as pdfium
import pytest

from engine import periods
from flows.reporting.operations_report.flow import operations_report
from registry import (
    Direction,
    HumanStep,
    KpiDefinition,
    KpiMeasurement,
    Standing,
    StepStatus,
    VendorScorecard,
    session,
)
from registry.clock import utcnow
from tests import browser, factories
from tests.conftest import Mailbox

CHART_BAND = (231, 240, 250)  # the shaded period behind every KPI chart: drawn nowhere else
GREEN, RED, GREY = "rgb(43, 138, 62)", "rgb(201, 42, 42)", "rgb(91, 103, 117)"
NEUTRAL_EDGE = "rgb(173, 181, 189)"


def _shots(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("OPS_TEST_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _kpi(db: Any, code: str, unit: str, target: float, direction: Direction, values: dict[date, float]) -> None:
    kpi = KpiDefinition(code=code, name=f"KPI {code}", unit=unit, target=target, direction=direction)
    db.add(kpi)
    db.flush()
    db.add_all(KpiMeasurement(kpi_id=kpi.id or 0, measured_on=day, value=value) for day, value in values.items())


def _reader(db: Any) -> str:
    dora = factories.person(db, "Dora Director")
    dora.roles = ["operations_report"]
    db.add(dora)
    return dora.email


@pytest.mark.browser
def test_a_month_not_yet_measured_headlines_neutrally_on_the_page_and_in_the_subject(
        prefect_api: str, registry_db: str, smtp: Mailbox, tmp_path: Path) -> None:
    month = periods.parse("this-month", periods.today())
    with session() as db:
        email = _reader(db)
        _kpi(db, "OTD", "%", 95, Direction.higher_is_better, {month.start - timedelta(days=10): 96})
    outcome = operations_report(period="this-month")
    assert (outcome.kpis, outcome.kpis_met, outcome.sent) == (1, 0, 1)

    [mail] = smtp.wait_for(1, to=email)
    assert mail.subject == f"Operations report {month.label}: no KPI measured yet this month"

    with browser.chromium(tmp_path / "chromium-profile") as chromium:
        page = chromium.new_page()
        page.set_viewport_size({"width": 900, "height": 700})
        page.goto(Path(outcome.html).as_uri())
        tile = page.locator("#kpi-headline")
        text = tile.inner_text()
        edge = tile.evaluate("t => getComputedStyle(t).borderLeftColor")
        page.screenshot(path=str(_shots(tmp_path) / "report-this-month-headline.png"))
    assert "no KPI measured yet this month" in text and "0 of 0" not in text, text
    assert edge == NEUTRAL_EDGE, edge  # not the red of a missed target


def _october(tmp_path: Path, read: str) -> Any:
    """October's report, with KPIs that moved both ways, seven answered requests and no approval, a vendor scored
    in Q3 and reviewed again for a Q4 without deliveries, and one never reviewed: what `read` (a script) finds in
    its page in Chromium, and a screenshot of the page."""
    september, october = date(2026, 9, 20), date(2026, 10, 20)
    with session() as db:
        _kpi(db, "BUDVAR", "%", 2.0, Direction.lower_is_better, {september: 2.5, october: 2.4})  # down, good
        _kpi(db, "CAPA", "%", 85.0, Direction.higher_is_better, {september: 83.3, october: 82.2})  # down, bad
        _kpi(db, "IRT", "h", 4.0, Direction.lower_is_better, {september: 3.5, october: 3.9})  # up, bad
        warden = factories.person(db, "Wendy Warden")
        asked = datetime(2026, 10, 12, 9, tzinfo=UTC)
        db.add_all(HumanStep(key=f"ack-{n}", kind="form", form="drill_ack", title="t", subject_type="test",
                             subject_id=n, person_id=warden.id or 0, created_at=asked, due_at=asked + timedelta(1),
                             expires_at=asked + timedelta(1), status=StepStatus.answered,
                             answered_at=asked + timedelta(minutes=20 + n)) for n in range(7))
        owner = factories.person(db, "Paula Procurement")
        scored = factories.vendor(db, owner=owner, standing=Standing.preferred)
        factories.vendor(db, owner=owner)
        db.add(VendorScorecard(vendor_id=scored.id or 0, period="2026-Q3", deliveries=12, score=92.5,
                               standing_before=Standing.preferred, standing_proposed=Standing.preferred,
                               created_at=utcnow() - timedelta(days=60)))
        # Reviewed again for a quarter without deliveries: no score, and made later.
        db.add(VendorScorecard(vendor_id=scored.id or 0, period="2026-Q4", deliveries=0, score=None,
                               standing_before=Standing.preferred, standing_proposed=Standing.preferred))
    outcome = operations_report(period="2026-10", send=False)
    with browser.chromium(tmp_path / "chromium-profile") as chromium:
        page = chromium.new_page()
        page.set_viewport_size({"width": 900, "height": 1400})
        page.goto(Path(outcome.html).as_uri())
        found = page.evaluate(read)
        page.screenshot(path=str(_shots(tmp_path) / "report-october.png"), full_page=True)
    return found


@pytest.mark.browser
def test_a_change_s_arrow_shows_which_way_the_number_moved_and_its_colour_whether_that_is_good(
        prefect_api: str, registry_db: str, tmp_path: Path) -> None:
    changes = _october(tmp_path, "() => Array.from(document.querySelectorAll('#kpis tbody tr')).map(r => ["
                                 "r.cells[0].querySelector('.sub').innerText, r.cells[5].firstChild.textContent"
                                 ".trim(), getComputedStyle(r.cells[5]).color])")
    # The sign, the arrow and the colour (the number's own format is the number formatter's).
    assert [(code, shown[0], shown[-1], colour) for code, shown, colour in changes] == [
        ("BUDVAR", "−", "▼", GREEN), ("CAPA", "−", "▼", RED), ("IRT", "+", "▲", RED)], changes


@pytest.mark.browser
def test_the_approval_tile_counts_approvals_and_says_when_none_was_answered(
        prefect_api: str, registry_db: str, tmp_path: Path) -> None:
    tiles = _october(tmp_path, "() => Array.from(document.querySelectorAll('#summary .tile')).map(t => t.innerText)")
    [approvals] = [t for t in tiles if "time to approve" in t]
    assert "no approval was answered in the period" in approvals and "requests: 7 answered" in approvals, approvals
    assert "answers in all" not in approvals


@pytest.mark.browser
def test_a_vendor_s_latest_score_is_the_newest_it_earned_or_says_why_there_is_none(
        prefect_api: str, registry_db: str, tmp_path: Path) -> None:
    scores = _october(tmp_path, "() => Array.from(document.querySelectorAll('#vendors tbody tr')).map("
                                "r => r.cells[3].innerText.split(/\\s+/).join(' '))")
    assert scores == ["92.5 2026-Q3; no deliveries in 2026-Q4", "— no scorecard yet"], scores


def test_page_one_of_the_pdf_holds_kpi_charts_and_the_grid_breaks_between_rows(
        prefect_api: str, registry_db: str, tmp_path: Path) -> None:
    """Seven KPIs with a year of weekly measurements, as the demo has: the grid is taller than what is left of
    page 1, so as one picture it went whole to page 2 and left page 1 more than half empty."""
    weeks = [date(2025, 11, 2) + timedelta(weeks=n) for n in range(53)]
    with session() as db:
        for n in range(7):
            _kpi(db, f"K{n}", "%", 90, Direction.higher_is_better, {d: 85 + (i % 10) for i, d in enumerate(weeks)})
    outcome = operations_report(period="2026-10", send=False)

    document = pdfium.PdfDocument(outcome.pdf)
    try:
        pages = [page.render(scale=1).to_pil().convert("RGB") for page in document]
    finally:
        document.close()
    for number, picture in enumerate(pages, start=1):
        picture.save(_shots(tmp_path) / f"report-pdf-page-{number}.png")
    band = [dict((rgb, n) for n, rgb in picture.getcolors(1 << 24) or []).get(CHART_BAND, 0) for picture in pages]
    assert band[0] > 1_000 and band[1] > 1_000, band  # charts on page 1, the rest of the grid on page 2
    first = pages[0].convert("L")
    width, height = first.size
    above_footer = range(0, int(height * 0.93), 2)  # the running footer sits lower
    lowest = max(y for y in above_footer if any(first.getpixel((x, y)) < 240 for x in range(0, width, 4)))
    assert lowest > height * 0.7, (lowest, height)  # page 1 is used, not left half empty
