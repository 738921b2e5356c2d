from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update
from sqlmodel import col, select

from flows.compliance.audit.flow import AuditOutcome, AuditParameters, compliance_audit
from registry import (
    Audit,
    AuditEvent,
    ControlTest,
    CorrectiveAction,
    Evidence,
    Finding,
    Framework,
    HumanStep,
    Notification,
    Occasion,
    OccasionStatus,
    Person,
    TestResult,
    session,
)
from registry.clock import utcnow
from registry.trail import verify
from tests import factories
from tests.conftest import Gateway, Mailbox
from tests.flows.background import in_background
from tests.links import answer_link, links_in


def _organisation() -> dict[str, Any]:
    """A compliance manager (with a manager), Olive owning two controls, Omar owning one."""
    with session() as db:
        director = factories.person(db, "Dana Director")
        manager = factories.person(db, "Clara Compliance", manager=director)
        olive = factories.person(db, "Olive Owner", manager=director)
        omar = factories.person(db, "Omar Owner", manager=director)
        framework = factories.framework(db, manager=manager, owners=[olive, olive, omar])
        return {"framework": framework.name, "manager": manager, "olive": olive, "omar": omar}


def _close_evidence_window(framework: str) -> None:
    with session() as db:
        framework_id = db.exec(select(Framework.id).where(Framework.name == framework)).one()
        db.execute(update(Audit).where(col(Audit.framework_id) == framework_id)
                   .values(evidence_due_at=utcnow() - timedelta(seconds=1)))




def _signoff_mail(smtp: Mailbox, manager: Person, count: int = 1) -> str:
    mails = [m for m in smtp.wait_for(1, seconds=60, to=manager.email) if m.subject.startswith("Sign-off needed")]
    deadline = time.monotonic() + 60
    while len(mails) < count and time.monotonic() < deadline:
        time.sleep(0.2)
        mails = [m for m in smtp.messages(to=manager.email) if m.subject.startswith("Sign-off needed")]
    assert len(mails) >= count
    return links_in(mails[0].html)[0]


def test_the_quarterly_audit_end_to_end(prefect_api: str, gateway: Gateway, smtp: Mailbox) -> None:
    org = _organisation()
    params = AuditParameters(framework=org["framework"], period="2026-Q4")

    opened = compliance_audit(**dict(params))
    assert opened.status == "collecting" and opened.controls == 3

    mails = smtp.wait_for(2)
    by_person = Counter(m.to for m in mails)
    assert by_person == {org["olive"].email: 1, org["omar"].email: 1}, "one digest per owner"
    [olive_mail] = smtp.messages(to=org["olive"].email)
    first, second = links_in(olive_mail.html)
    ok = answer_link(gateway.client, first, {"result": "pass", "note": "Reviewed",
                                             "evidence_url": "https://wiki.test.example/ac1"})
    assert ok.status_code == 200
    evidence = b"access review export"
    failed = answer_link(gateway.client, second, {"result": "fail", "note": "Two leavers kept VPN access"},
                         files={"evidence_file": ("review.csv", evidence)})
    assert failed.status_code == 200

    assert compliance_audit(**dict(params)).status == "collecting", "a re-run inside the window changes nothing"
    assert len(smtp.messages()) == 2

    _close_evidence_window(org["framework"])
    thread, outcome = in_background(lambda: compliance_audit(**dict(params)))
    approve = _signoff_mail(smtp, org["manager"])
    page = gateway.client.get(approve)
    assert "Sign off the" in page.text and "Report SHA-256" in page.text
    report_page = gateway.client.get(approve + "/attachment")
    assert report_page.status_code == 200 and "compliance audit 2026-Q4" in report_page.text
    assert "sandbox" in report_page.headers["content-security-policy"]
    answered = answer_link(gateway.client, approve, {"decision": "approve", "comment": "Fine."})
    assert answered.status_code == 200
    thread.join(timeout=60)
    assert "error" not in outcome, outcome.get("error")
    result: AuditOutcome = outcome["result"]
    assert result.status == "closed" and result.findings == 2
    assert gateway.client.get(approve + "/attachment").status_code == 409, "a decided link opens nothing"

    with session() as db:
        audit = db.exec(select(Audit)).one()
        occasion = db.get(Occasion, audit.occasion_id)
        tests = {t.result for t in db.exec(select(ControlTest))}
        findings = list(db.exec(select(Finding)))
        actions = list(db.exec(select(CorrectiveAction)))
        files = list(db.exec(select(Evidence).where(col(Evidence.sha256).is_not(None))))
        signed = db.exec(select(AuditEvent).where(AuditEvent.action == "audit.signed_off")).one()
        trail_ok = verify(db).ok
    assert occasion is not None and occasion.status == OccasionStatus.closed and occasion.closed_at is not None
    assert tests == {TestResult.passed, TestResult.failed, TestResult.unanswered}
    assert {f.severity.value for f in findings} == {"high"}
    assert {a.owner_id for a in actions} == {org["olive"].id, org["omar"].id}
    assert all(a.due_at > utcnow() + timedelta(days=7) for a in actions)
    import hashlib

    assert files and files[0].sha256 == hashlib.sha256(evidence).hexdigest()
    assert Path(files[0].stored_path or "").read_bytes() == evidence
    report = Path(occasion.report_path or "").read_bytes()
    assert signed.data["report_sha256"] == occasion.report_sha256 == hashlib.sha256(report).hexdigest()
    assert trail_ok
    action_mails = [m for m in smtp.messages() if m.subject.startswith("Corrective action")]
    assert Counter(m.to for m in action_mails) == {org["olive"].email: 1, org["omar"].email: 1}


def test_a_rejected_sign_off_tells_the_owners_and_keeps_the_audit_open(prefect_api: str, gateway: Gateway,
                                                                        smtp: Mailbox) -> None:
    org = _organisation()
    params = AuditParameters(framework=org["framework"], period="2026-Q4")
    compliance_audit(**dict(params))
    _close_evidence_window(org["framework"])
    thread, outcome = in_background(lambda: compliance_audit(**dict(params)))
    link = _signoff_mail(smtp, org["manager"])
    rejected = answer_link(gateway.client, link, {"decision": "reject", "comment": "Evidence for C-1 is stale."})
    assert rejected.status_code == 200
    thread.join(timeout=60)
    assert outcome["result"].status == "changes_requested"
    notices = [m for m in smtp.messages() if m.subject.startswith("Audit sign-off rejected")]
    assert {m.to for m in notices} == {org["olive"].email, org["omar"].email}
    assert all("Evidence for C-1 is stale." in m.html for m in notices)

    thread, outcome = in_background(lambda: compliance_audit(**dict(params)))
    second = _signoff_mail(smtp, org["manager"], count=2)
    assert second != link
    assert gateway.client.get(link).status_code == 409, "the first round's link is dead"
    answer_link(gateway.client, links_in(smtp.messages(to=org["manager"].email)[0].html)[0],
                {"decision": "approve", "comment": ""})
    thread.join(timeout=60)
    assert outcome["result"].status == "closed"
    with session() as db:
        assert db.exec(select(Occasion)).one().signoff_round == 2


_RUN_FLOW = """
from flows.compliance.audit.flow import compliance_audit
compliance_audit(framework={framework!r}, period="2026-Q4")
"""


def test_a_run_killed_after_sending_and_run_again_sends_nothing_twice(prefect_api: str, gateway: Gateway,
                                                                      smtp: Mailbox) -> None:
    org = _organisation()
    compliance_audit(framework=org["framework"], period="2026-Q4")
    _close_evidence_window(org["framework"])
    env = {**os.environ, "PREFECT_API_URL": prefect_api}
    victim = subprocess.Popen([sys.executable, "-c", _RUN_FLOW.format(framework=org["framework"])], env=env,
                              start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        link = _signoff_mail(smtp, org["manager"])
    finally:
        os.killpg(victim.pid, signal.SIGKILL)
        victim.wait(timeout=10)
    before = sorted((m.to, m.subject) for m in smtp.messages())
    assert len(before) == 5  # two evidence digests, two action notices, one sign-off request

    with session() as db:
        step_id = db.exec(select(Occasion.signoff_step_id)).one()
        killed_run = db.get(HumanStep, step_id).flow_run_id  # type: ignore[union-attr]
    # What a runner reports when the process of its run dies (this run had no runner to notice): only then may
    # a re-run take the waiting step over; a live holder keeps it (see the duplicate-run test below).
    from prefect.client.orchestration import get_client
    from prefect.states import Crashed

    with get_client(sync_client=True) as client:
        client.set_flow_run_state(killed_run or "", Crashed(message="killed"), force=True)
    params = AuditParameters(framework=org["framework"], period="2026-Q4")
    thread, outcome = in_background(lambda: compliance_audit(**dict(params)))
    deadline = time.monotonic() + 30
    waiting = killed_run
    while waiting == killed_run and time.monotonic() < deadline:
        time.sleep(0.2)
        with session() as db:
            waiting = db.get(HumanStep, step_id).flow_run_id  # type: ignore[union-attr]
    assert waiting != killed_run, "the re-run must take over the wait"
    time.sleep(2)  # let the re-run reach its pause
    assert answer_link(gateway.client, link, {"decision": "approve", "comment": "ok"}).status_code == 200
    thread.join(timeout=60)
    assert outcome["result"].status == "closed", outcome
    assert sorted((m.to, m.subject) for m in smtp.messages()) == before
    with session() as db:
        keys = list(db.exec(select(Notification.idempotency_key)))
    assert len(keys) == len(set(keys)) == 5


def test_preview_sends_and_writes_nothing(prefect_api: str, smtp: Mailbox) -> None:
    org = _organisation()
    result = compliance_audit(framework=org["framework"], preview=True)
    assert result.status == "preview" and "2 evidence request" in result.detail
    with session() as db:
        assert db.exec(select(Audit)).all() == [] and db.exec(select(Notification)).all() == []
    assert smtp.messages() == []


def test_an_unknown_framework_is_named_in_the_error(prefect_api: str, registry_db: str) -> None:
    _organisation()
    with pytest.raises(ValueError, match="'Nope' does not exist"):
        compliance_audit(framework="Nope")


def _audit_past_its_evidence_window(org: dict[str, Any]) -> dict[str, Any]:
    """The organisation's audit for this quarter, opened with its evidence deadline already passed."""
    from engine.deadlines import quarter_bounds, quarter_of
    from engine.occasions import open_occasion
    from engine.settings import get_settings
    from registry import Control

    tz = get_settings().timezone
    period = quarter_of(utcnow(), tz)
    start, end = quarter_bounds(period, tz)
    with session() as db:
        framework = db.exec(select(Framework).where(Framework.name == org["framework"])).one()
        occasion, _ = open_occasion(db, process="compliance-audit", key=f"{framework.name} {period}",
                                    title=f"{framework.name} audit {period}", period_start=start, period_end=end,
                                    status=OccasionStatus.collecting, phase="collecting")
        audit = Audit(framework_id=framework.id or 0, period=period,
                      evidence_due_at=utcnow() - timedelta(minutes=5), occasion_id=occasion.id)
        db.add(audit)
        db.flush()
        for control in db.exec(select(Control).where(Control.framework_id == framework.id)):
            db.add(ControlTest(audit_id=audit.id or 0, control_id=control.id or 0, owner_id=control.owner_id or 0))
        return {"audit_id": audit.id, "params": {"framework": framework.name, "period": period}}


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
            assert name not in {"FAILED", "CRASHED", "CANCELLED"} - set(wanted), f"flow run {run_id} ended {name}"
            assert time.monotonic() < deadline, f"flow run {run_id} still {name} after {seconds:.0f} s"
            time.sleep(0.2)


def _logged(run_id: object) -> str:
    from uuid import UUID

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    with get_client(sync_client=True) as client:
        logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[UUID(str(run_id))])))
    return "\n".join(log.message for log in logs)


def test_a_second_audit_run_while_the_sign_off_waits_ends_cleanly_and_the_approval_resumes_the_waiting_run(
        served: Any, gateway: Gateway, smtp: Mailbox) -> None:
    from engine import runs
    from tests.flows.conftest import AUDIT_DEPLOYMENT

    org = _organisation()
    audit = _audit_past_its_evidence_window(org)
    waiting = runs.start(AUDIT_DEPLOYMENT, audit["params"])
    approve = _signoff_mail(smtp, org["manager"])
    _state_of(waiting.id, "PAUSED")

    duplicate = runs.start(AUDIT_DEPLOYMENT, audit["params"])
    assert _state_of(duplicate.id, "COMPLETED") == "COMPLETED"
    said = f"the sign-off is already awaited by flow run {waiting.name} ({waiting.id})"
    deadline = time.monotonic() + 15  # a run's last logs reach the API shortly after its final state
    while said not in (logged := _logged(duplicate.id)) and time.monotonic() < deadline:
        time.sleep(0.3)
    assert said in logged
    with session() as db:
        step = db.exec(select(HumanStep).where(HumanStep.key == f"audit-{audit['audit_id']}-signoff-1")).one()
    assert step.flow_run_id == str(waiting.id), "the duplicate did not take the step"

    assert answer_link(gateway.client, approve, {"decision": "approve", "comment": "Fine."}).status_code == 200
    assert _state_of(waiting.id, "COMPLETED") == "COMPLETED"
    with session() as db:
        closed = db.get(Audit, audit["audit_id"])
        assert closed is not None and db.get(Occasion, closed.occasion_id).status == OccasionStatus.closed  # type: ignore[union-attr]
        assert verify(db).ok
    signoffs = [m for m in smtp.messages(to=org["manager"].email) if m.subject.startswith("Sign-off needed")]
    assert len(signoffs) == 1, "the duplicate asked nobody again"


def test_two_audit_runs_for_one_period_at_the_same_moment_both_end_cleanly_and_ask_once(
        any_db: str, prefect_api: str, smtp: Mailbox) -> None:
    import threading

    org = _organisation()
    params = AuditParameters(framework=org["framework"], period="2026-Q4", evidence_window_minutes=30)
    start = threading.Barrier(2)

    def _run() -> AuditOutcome:
        start.wait(timeout=30)
        return compliance_audit(**dict(params))

    started = [in_background(_run) for _ in range(2)]
    outcomes = []
    for thread, outcome in started:
        thread.join(timeout=90)
        assert not thread.is_alive(), "a run is still going"
        assert "error" not in outcome, f"a run failed instead of ending cleanly: {outcome.get('error')!r}"
        outcomes.append(outcome["result"])
    assert {o.status for o in outcomes} == {"collecting"} and len({o.audit_id for o in outcomes}) == 1
    with session() as db:
        assert len(list(db.exec(select(Audit)))) == 1
        assert len(list(db.exec(select(HumanStep)))) == 3, "one evidence step per control"
        assert len(list(db.exec(select(AuditEvent).where(AuditEvent.action == "step.requested")))) == 3
        assert verify(db).ok
    assert Counter(m.to for m in smtp.messages()) == {org["olive"].email: 1, org["omar"].email: 1}


def _artifacts_of(run_id: object) -> str:
    from uuid import UUID

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[UUID(str(run_id))])))
    return "\n".join(str(a.data) for a in found)


def test_the_preview_shows_the_deadline_the_real_run_would_set(prefect_api: str, smtp: Mailbox) -> None:
    """A trial window of 30 minutes: the previewed evidence request says so (it used to say five working days)."""
    org = _organisation()
    params = AuditParameters(framework=org["framework"], period="2026-Q4", evidence_window_minutes=30, preview=True)
    before = utcnow()
    state = compliance_audit(**dict(params), return_state=True)
    after = utcnow()
    assert state.result().status == "preview"  # type: ignore[union-attr]
    shown = _artifacts_of(state.state_details.flow_run_id)
    assert "Evidence needed" in shown
    moments = [before + timedelta(minutes=30, seconds=s) for s in range(0, int((after - before).total_seconds()) + 61)]
    expected = {m.strftime("%a %d %b %Y %H:%M") for m in moments}  # the owners read UTC (the factories' default)
    assert any(text in shown for text in expected), f"no deadline 30 minutes on in the preview:\n{shown}"
    with session() as db:
        assert db.exec(select(Audit)).all() == [] and db.exec(select(Notification)).all() == []
    assert smtp.messages() == []


def test_two_runs_evaluating_in_the_same_second_build_one_report_and_ask_one_sign_off(
        any_db: str, prefect_api: str, gateway: Gateway, smtp: Mailbox) -> None:
    import threading

    org = _organisation()
    params = AuditParameters(framework=org["framework"], period="2026-Q4")
    compliance_audit(**dict(params))
    _close_evidence_window(org["framework"])
    start = threading.Barrier(2)

    def _run() -> AuditOutcome:
        start.wait(timeout=30)
        return compliance_audit(**dict(params))

    started = [in_background(_run) for _ in range(2)]
    link = _signoff_mail(smtp, org["manager"])
    deadline = time.monotonic() + 60
    while all(thread.is_alive() for thread, _ in started):  # the loser ends; the winner waits at the gate
        assert time.monotonic() < deadline, "both runs are still going"
        time.sleep(0.2)
    time.sleep(2)  # let the winner reach its pause
    assert answer_link(gateway.client, link, {"decision": "approve", "comment": "Once."}).status_code == 200
    outcomes = []
    for thread, outcome in started:
        thread.join(timeout=90)
        assert not thread.is_alive() and "error" not in outcome, outcome.get("error")
        outcomes.append(outcome["result"])
    assert sorted(o.status for o in outcomes) in (["awaiting_signoff", "closed"], ["closed", "collecting"]), outcomes
    assert len({o.audit_id for o in outcomes}) == 1
    with session() as db:
        built = list(db.exec(select(AuditEvent).where(AuditEvent.action == "occasion.report")))
        signoffs = list(db.exec(select(HumanStep).where(col(HumanStep.key).contains("-signoff-"))))
        assert verify(db).ok
    assert len(built) == 1, "one report"
    assert len(signoffs) == 1
    assert len([m for m in smtp.messages() if m.subject.startswith("Sign-off needed")]) == 1
    assert Counter(m.to for m in smtp.messages() if m.subject.startswith("Corrective action")) == {
        org["olive"].email: 1, org["omar"].email: 1}


def test_a_run_that_read_the_phase_before_another_claimed_it_builds_no_report(
        any_db: str, prefect_api: str, smtp: Mailbox) -> None:
    """The loser of the claim: it saw "collecting" as the winner did, and finds the phase taken."""
    from flows.compliance.audit.tasks import open_audit, report_for_signoff

    org = _organisation()
    opened = open_audit.fn(org["framework"], "2026-Q4", 5)
    _close_evidence_window(org["framework"])
    assert opened.phase == "collecting"
    first = report_for_signoff.fn(opened.audit_id, opened.phase, 3)
    second = report_for_signoff.fn(opened.audit_id, opened.phase, 3)
    assert first is not None and second is None
    with session() as db:
        assert len(list(db.exec(select(AuditEvent).where(AuditEvent.action == "occasion.report")))) == 1
        occasion = db.exec(select(Occasion)).one()
    assert (occasion.phase, occasion.status, occasion.signoff_step_id) == (
        "awaiting_signoff", OccasionStatus.awaiting_signoff, first)
