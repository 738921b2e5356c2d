"""What the operations report shows people, in a real browser: forms by their titles, never their registry names;
money and counts in the organisation's currency and locale."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from playwright.sync_api import expect

from flows.reporting.operations_report.flow import operations_report
from registry import HumanStep, StepStatus, session
from tests import browser, factories

PERIOD = "2026-10"
SCREENSHOT = Path("/tmp/operations-report-latency.png")


@pytest.mark.browser
def test_the_latency_table_names_each_form_by_its_title_and_stock_shows_in_pounds(
        prefect_api: str, registry_db: str, tmp_path: Path) -> None:
    asked = datetime(2026, 10, 6, 9, tzinfo=UTC)
    with session() as db:
        person = factories.person(db, "Sam Staff")
        for n, (kind, form) in enumerate([("form", "drill_ack"), ("form", "drill_ack"), ("form", "attestation"),
                                          ("approval", "approval")]):
            db.add(HumanStep(key=f"latency-{n}", kind=kind, form=form, title="t", subject_type="test",
                             subject_id=n, person_id=person.id or 0, created_at=asked, due_at=asked + timedelta(days=1),
                             expires_at=asked + timedelta(days=2), status=StepStatus.answered,
                             answered_at=asked + timedelta(hours=n + 1)))
        vendor = factories.vendor(db, owner=person)
        factories.inventory_item(db, vendor, on_hand=1200, reorder_point=10, unit_cost="45.2325")  # 54,279
        factories.inventory_item(db, vendor, on_hand=0, reorder_point=2500, unit_cost="1.00")
    outcome = operations_report(period=PERIOD, send=False)

    with browser.chromium(tmp_path / "chromium-profile") as chromium:
        page = chromium.new_page()
        page.goto(Path(outcome.html).as_uri())
        latency = page.locator("#latency")
        forms = latency.locator("tbody tr td:nth-child(2)").all_inner_texts()
        assert sorted(forms) == ["Approval decision", "Control attestation", "Drill headcount answer"]
        expect(latency).not_to_contain_text("drill_ack")
        inventory = page.locator("#inventory")
        expect(inventory).to_contain_text("£54,279.00")
        expect(inventory.locator("table")).to_contain_text("2,500")  # a reorder point, with its separator
        latency.scroll_into_view_if_needed()
        latency.screenshot(path=str(SCREENSHOT))
        inventory.screenshot(path="/tmp/operations-report-inventory.png")
