"""The compliance manager signs off in a real browser; the suspended audit run resumes and completes.

Real parts only: the Prefect server, `ops serve` running the deployments from prefect.yaml, the link gateway over
HTTP, the SMTP catcher and headless Chromium.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import expect
from sqlmodel import col, select

from engine.deadlines import quarter_bounds, quarter_of
from engine.occasions import open_occasion
from engine.settings import get_settings
from registry import (
    Audit,
    AuditEvent,
    Control,
    ControlTest,
    CorrectiveAction,
    Finding,
    HumanStep,
    Occasion,
    OccasionStatus,
    TestResult,
    session,
    trail,
)
from registry.clock import utcnow
from tests import browser, factories
from tests.conftest import Gateway, Mailbox
from tests.flows.conftest import AUDIT_DEPLOYMENT, Served
from tests.links import links_in

SCREENSHOT = Path("/tmp/step-page.png")
FINAL_STATES = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def _state(client: httpx.Client, api: str, run_id: str) -> str:
    response = client.get(f"{api}/flow_runs/{run_id}")
    response.raise_for_status()
    return str(response.json()["state"]["type"])


def _wait_for_state(client: httpx.Client, api: str, run_id: str, wanted: set[str], seconds: float,
                    every: float = 0.1) -> str:
    deadline = time.monotonic() + seconds
    state = _state(client, api, run_id)
    while state not in wanted:
        assert state not in FINAL_STATES - wanted, f"flow run {run_id} ended {state}"
        assert time.monotonic() < deadline, f"flow run {run_id} still {state} after {seconds:.0f} s"
        time.sleep(every)
        state = _state(client, api, run_id)
    return state


@dataclass(frozen=True)
class Seeded:
    audit_id: int
    framework: str
    period: str
    manager_email: str
    control_ids: list[int]


def _timeline(client: httpx.Client, api: str, run_id: str, since: datetime) -> str:
    """The run's states from `since` on, as seconds after it (where the resume latency goes)."""
    response = client.get(f"{api}/flow_run_states/", params={"flow_run_id": run_id})
    response.raise_for_status()
    states = sorted(response.json(), key=lambda s: s["timestamp"])
    return ", ".join(f"{s['name']} +{(datetime.fromisoformat(s['timestamp']) - since).total_seconds():.2f}"
                     for s in states if datetime.fromisoformat(s["timestamp"]) >= since)


def _seed_audit_past_its_evidence_window() -> Seeded:
    """A framework with two controls and its audit for this quarter, evidence deadline already passed."""
    tz = get_settings().timezone
    period = quarter_of(utcnow(), tz)
    start, end = quarter_bounds(period, tz)
    with session() as db:
        manager = factories.person(db, "Mona Manager")
        owners = [factories.person(db, "Olga Owner"), factories.person(db, "Omar Owner")]
        framework = factories.framework(db, manager=manager, owners=owners)
        occasion, _ = open_occasion(db, process="compliance-audit", key=f"{framework.name} {period}",
                                    title=f"{framework.name} audit {period}", period_start=start, period_end=end,
                                    status=OccasionStatus.collecting, phase="collecting")
        audit = Audit(framework_id=framework.id or 0, period=period,
                      evidence_due_at=utcnow() - timedelta(minutes=5), occasion_id=occasion.id)
        db.add(audit)
        db.flush()
        controls = list(db.exec(select(Control).where(Control.framework_id == framework.id)
                                .order_by(col(Control.ref))))
        for control in controls:
            db.add(ControlTest(audit_id=audit.id or 0, control_id=control.id or 0, owner_id=control.owner_id or 0))
        return Seeded(audit_id=audit.id or 0, framework=framework.name, period=period, manager_email=manager.email,
                      control_ids=[c.id or 0 for c in controls])


@pytest.mark.browser
def test_manager_approves_in_chromium_and_the_waiting_run_completes(
        served: Served, gateway: Gateway, smtp: Mailbox, tmp_path: Path) -> None:
    from prefect.client.schemas.objects import FlowRun
    from prefect.deployments import run_deployment

    seeded = _seed_audit_past_its_evidence_window()
    audit_id, framework_name, period = seeded.audit_id, seeded.framework, seeded.period

    # As the UI's Run button does: a flow run of the deployment, picked up by the serving process.
    started = run_deployment(AUDIT_DEPLOYMENT, parameters={"framework": framework_name, "period": period},
                             timeout=0)
    assert isinstance(started, FlowRun)

    # Evaluated at once (the window has passed), then the sign-off request goes out and the run suspends.
    caught = smtp.wait_for(1, seconds=120, to=seeded.manager_email)
    mail = next(m for m in caught if m.subject.startswith("Sign-off needed"))
    assert mail.subject == f"Sign-off needed: {framework_name} audit {period}"
    url = links_in(mail.html)[0]
    assert url.startswith(f"{gateway.url}/s/")
    with session() as db:
        audit = db.get(Audit, audit_id)
        occasion = db.get(Occasion, audit.occasion_id) if audit else None
        assert occasion is not None and occasion.status == OccasionStatus.awaiting_signoff
        assert occasion.signoff_step_id is not None
        step = db.get(HumanStep, occasion.signoff_step_id)
        assert step is not None and step.flow_run_id is not None
        waiting_run = step.flow_run_id
    assert waiting_run == str(started.id)

    with httpx.Client(timeout=10) as api:
        # A person takes seconds to read the page; the run has suspended by then. Wait for it explicitly so the
        # timing below measures the resume, not a race with the suspension.
        _wait_for_state(api, served.api, waiting_run, {"PAUSED"}, seconds=60)
        with browser.chromium(tmp_path / "chromium-profile") as chromium:
            page = chromium.new_page()
            page.goto(url)
            expect(page.get_by_role("heading", level=1)).to_have_text(f"Sign off the {framework_name} audit {period}")
            expect(page.get_by_role("button", name="Reject")).to_be_visible()
            page.screenshot(path=str(SCREENSHOT), full_page=True)
            page.get_by_label("Comment").fill("Reviewed the findings in the browser; approved.")
            clicked, clicked_at = time.monotonic(), datetime.now(UTC)
            page.get_by_role("button", name="Approve").click()
            expect(page.locator("#answered")).to_contain_text("Thank you")
            thanked = time.monotonic() - clicked

        running = _wait_for_state(api, served.api, waiting_run, {"RUNNING", "COMPLETED"}, seconds=90)
        resumed = time.monotonic() - clicked
        final = _wait_for_state(api, served.api, waiting_run, {"COMPLETED"}, seconds=90 - resumed)
        completed = time.monotonic() - clicked
        print(f"\nApprove click → thank-you page {thanked:.2f} s, → run {running} {resumed:.2f} s, "
              f"→ {final} {completed:.2f} s\n  states after the click: "
              f"{_timeline(api, served.api, waiting_run, clicked_at)}")

    with session() as db:
        audit = db.get(Audit, audit_id)
        occasion = db.get(Occasion, audit.occasion_id) if audit else None
        assert occasion is not None
        assert occasion.status == OccasionStatus.closed and occasion.closed_at is not None
        assert occasion.report_sha256
        tests = list(db.exec(select(ControlTest).where(ControlTest.audit_id == audit_id)))
        assert sorted(t.control_id for t in tests) == sorted(seeded.control_ids)
        assert all(t.result == TestResult.unanswered for t in tests)
        findings = list(db.exec(select(Finding).where(Finding.occasion_id == occasion.id)))
        assert {f.origin_type for f in findings} == {"control_test"}
        assert sorted(f.origin_id for f in findings) == sorted(t.id or 0 for t in tests)
        for finding in findings:
            action = db.exec(select(CorrectiveAction).where(CorrectiveAction.finding_id == finding.id)).one()
            assert action.owner_id == next(t.owner_id for t in tests if t.id == finding.origin_id)
        report = trail.verify(db)
        assert report.ok, report.problems
        signed = db.exec(select(AuditEvent).where(AuditEvent.action == "audit.signed_off",
                                                  AuditEvent.entity_id == audit_id)).one()
        assert signed.data["report_sha256"] == occasion.report_sha256
        assert signed.actor == seeded.manager_email
