"""A warden answers for a missing person from the escalation, in a real browser: the page names both.

Real parts: the drill's own opening task, the sweep's escalation, the SMTP catcher, the link gateway over HTTP and
headless Chromium.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from playwright.sync_api import expect
from sqlmodel import select

from engine import notify
from engine.sweep import SweepReport, escalate_overdue
from flows.continuity.drill.flow import DrillParameters
from flows.continuity.drill.tasks import open_drill
from registry import HumanStep, session
from registry.clock import utcnow
from tests import browser, factories
from tests.conftest import Gateway, Mailbox
from tests.links import links_in

SCREENSHOT = Path("/tmp/drill-warden-link-page.png")


@pytest.mark.browser
def test_a_warden_answering_from_the_escalation_sees_whom_they_account_for(
        smtp: Mailbox, gateway: Gateway, tmp_path: Path) -> None:
    with session() as db:
        ann = factories.person(db, "Ann Occupant")
        wendy = factories.person(db, "Wendy Warden")
        building = factories.facility(db, occupants=[ann], wardens=[wendy])
        code, ann_id, wendy_id, wendy_email = building.code, ann.id, wendy.id, wendy.email
    opened = open_drill.fn(DrillParameters(facility=code, window_minutes=30, escalate_after_minutes=1))
    assert opened.participants == 2
    escalate_overdue(utcnow() + timedelta(minutes=2), SweepReport())  # Ann has not answered: past the escalation
    notify.deliver_due()
    [escalation] = [m for m in smtp.wait_for(3, to=wendy_email) if m.subject.startswith("Escalated to you")]
    assert "Ann Occupant" in escalation.subject
    [url] = links_in(escalation.html)

    with browser.chromium(tmp_path / "chromium-profile") as chromium:
        page = chromium.new_page()
        page.goto(url)
        behalf = page.locator("#on-behalf")
        expect(behalf).to_contain_text("You are answering for Ann Occupant")
        expect(behalf).to_contain_text("given by you, Wendy Warden")
        expect(page.locator("p.muted").first).to_contain_text("Asked of Ann Occupant · answered by Wendy Warden")
        expect(page.locator("#details")).to_contain_text("Participant")
        expect(page.locator("#details")).to_contain_text("Ann Occupant")
        # The form asks about Ann, not about the warden reading it.
        expect(page.get_by_text("Is Ann Occupant safe?")).to_be_visible()
        expect(page.get_by_text("Where is Ann Occupant?")).to_be_visible()
        assert page.get_by_text("Are you safe?").count() == 0 and page.get_by_text("I am accounted for").count() == 0
        page.screenshot(path=str(SCREENSHOT), full_page=True)
        page.get_by_label("Ann Occupant is accounted for").check()
        page.get_by_label("Where is Ann Occupant?").fill("Assembly point A")
        page.get_by_role("button", name="Submit").click()
        expect(page.locator("#answered")).to_be_visible()
        expect(page.locator("#on-behalf")).to_contain_text("Recorded for Ann Occupant")
        # The answer read back as the form asked it, not as it is stored ("status: accounted").
        expect(page.locator("table")).to_contain_text("Is Ann Occupant safe?")
        expect(page.locator("table")).to_contain_text("Ann Occupant is accounted for")
        page.screenshot(path="/tmp/drill-warden-answered-page.png", full_page=True)

    with session() as db:
        [step] = db.exec(select(HumanStep).where(HumanStep.person_id == ann_id)).all()
        assert (step.answer or {})["status"] == "accounted" and step.answered_by_id == wendy_id, \
            "recorded as Ann's step, answered by the warden"


@pytest.mark.browser
def test_a_participant_answering_for_themselves_is_not_told_they_answer_for_someone(
        smtp: Mailbox, gateway: Gateway, tmp_path: Path) -> None:
    with session() as db:
        ann = factories.person(db, "Ann Occupant")
        building = factories.facility(db, occupants=[ann], wardens=[factories.person(db, "Wendy Warden")])
        code, ann_email = building.code, ann.email
    open_drill.fn(DrillParameters(facility=code, window_minutes=30, escalate_after_minutes=1))
    [alert] = [m for m in smtp.wait_for(1, to=ann_email) if m.subject.startswith("DRILL:")]
    with browser.chromium(tmp_path / "chromium-profile") as chromium:
        page = chromium.new_page()
        page.goto(links_in(alert.html)[0])
        expect(page.get_by_text("Are you safe?")).to_be_visible()
        expect(page.locator("p.muted").first).to_contain_text("For Ann Occupant")
        assert page.locator("#on-behalf").count() == 0
