from __future__ import annotations

import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import col, select

from engine.settings import get_settings
from flows.continuity.drill.dispatch import emergency_drill_dispatch
from flows.continuity.drill.flow import DrillOutcome, DrillParameters, emergency_drill
from registry import (
    AckStatus,
    ContinuityPlan,
    CorrectiveAction,
    Drill,
    DrillMeasure,
    DrillParticipant,
    DrillProgram,
    Finding,
    HumanStep,
    Person,
    StepStatus,
    session,
)
from registry.clock import utcnow
from registry.trail import verify
from tests import factories
from tests.conftest import Gateway, Mailbox
from tests.flows.background import finished, in_background, until
from tests.links import answer_link, links_in


def _building(occupants: int = 5, rto_minutes: int = 1) -> dict[str, Any]:
    with session() as db:
        director = factories.person(db, "Dora Director")
        director.roles = ["director"]
        manager = factories.person(db, "Mona Manager")
        people = [factories.person(db, f"Occupant {i}", manager=manager) for i in range(occupants)]
        wardens = [factories.person(db, "Wanda Warden"), factories.person(db, "Walt Warden")]
        building = factories.facility(db, occupants=[manager, *people], wardens=wardens)
        owner = factories.person(db, "Olga Owner")
        plan = factories.continuity_plan(db, owner=owner, at=building, rto_minutes=rto_minutes)
        factories.drill_program(db, building, plan=plan)
        return {"facility": building.code, "plan_id": plan.id, "manager": manager.email,
                "people": [p.email for p in people], "wardens": [w.email for w in wardens], "owner": owner.email}


def _alert_link(smtp: Mailbox, email: str) -> str:
    [mail] = [m for m in smtp.wait_for(1, to=email) if m.subject.startswith("DRILL:")]
    [url] = links_in(mail.html)
    return url


def test_a_drill_counts_heads_alerts_escalates_and_turns_what_went_wrong_into_actions(
        smtp: Mailbox, gateway: Gateway, prefect_api: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPS_DRILL_POLL_SECONDS", "0.2")
    get_settings.cache_clear()
    org = _building()
    everyone = 1 + len(org["people"]) + 2  # the manager, the occupants, the wardens
    params = DrillParameters(facility=org["facility"], window_minutes=0.4, escalate_after_minutes=0.12)
    thread, outcome = in_background(lambda: emergency_drill(**dict(params)))
    smtp.wait_for(everyone)
    alerts = [m for m in smtp.messages() if m.subject.startswith("DRILL:")]
    assert len(alerts) == everyone and len({m.to for m in alerts}) == everyone
    assert len({links_in(m.html)[0] for m in alerts}) == everyone, "every person gets a link of their own"

    first, helped, late, missing = org["people"][:4]
    response = answer_link(gateway.client, _alert_link(smtp, first), {"status": "accounted",
                                                                      "location": "Assembly point A"})
    assert response.status_code == 200
    # Asking for help without saying where is refused with the reason, and nothing is recorded.
    refused = answer_link(gateway.client, _alert_link(smtp, helped), {"status": "needs_assistance"})
    assert refused.status_code == 422 and "say where you are" in refused.text
    asked_at = time.monotonic()
    answer_link(gateway.client, _alert_link(smtp, helped), {"status": "needs_assistance",
                                                            "location": "Stairwell B, 2nd floor"})
    for warden in org["wardens"]:
        [alert] = until("assistance alert", lambda w=warden: [
            m for m in smtp.messages(to=w) if m.subject.startswith("ASSISTANCE NEEDED")])
        assert "Stairwell B, 2nd floor" in alert.text
    assert time.monotonic() - asked_at < 5, "wardens hear of a request for help within seconds"

    # After the escalation time the wardens get one message listing everyone still missing, with links.
    escalation = until("escalation to the warden", lambda: [
        m for m in smtp.messages(to=org["wardens"][0]) if m.subject.startswith("Escalated to you")])
    assert len(escalation) == 1
    with session() as db:
        late_name = db.exec(select(Person.name).where(Person.email == late)).one()
        missing_name = db.exec(select(Person.name).where(Person.email == missing)).one()
    assert late_name in escalation[0].text and missing_name in escalation[0].text
    manager_mail = until("escalation to the manager", lambda: [
        m for m in smtp.messages(to=org["manager"]) if m.subject.startswith("Escalated to you")])
    assert late_name in manager_mail[0].text
    # The warden accounts for one of them from the escalation's link for that person.
    warden_links = links_in(escalation[0].html)
    with session() as db:
        late_step = db.exec(select(HumanStep).join(Person, col(Person.id) == HumanStep.person_id)
                            .where(Person.email == late, HumanStep.subject_type == "drill")).one()
    [late_url] = [u for u in warden_links if _step_of(u) == late_step.id]
    assert answer_link(gateway.client, late_url, {"status": "accounted", "location": "Car park"}).status_code == 200

    thread.join(timeout=90)
    assert "error" not in outcome, outcome.get("error")
    result = outcome["result"]
    assert isinstance(result, DrillOutcome)
    # Answered: first, helped, late (by the warden). Missing: everyone else, including the manager and wardens.
    assert (result.accounted, result.total) == (3, everyone)
    assert result.recovery_minutes is None and result.findings == 3
    assert result.median_seconds is not None and result.p90_seconds is not None
    assert result.median_seconds <= result.p90_seconds < 0.4 * 60 + 5

    with session() as db:
        drill = db.get(Drill, result.drill_id)
        assert drill is not None and drill.status == "closed" and drill.accounted == 3
        assert drill.unscheduled and drill.scheduled_for is None
        by_email = {person.email: participant for participant, person in db.exec(
            select(DrillParticipant, Person).join(Person, col(Person.id) == DrillParticipant.person_id)
            .where(DrillParticipant.drill_id == drill.id))}
        assert by_email[helped].status == AckStatus.needs_assistance and by_email[helped].assistance_alerted_at
        assert by_email[late].status == AckStatus.accounted and by_email[late].answered_by_id != \
            by_email[late].person_id and by_email[late].escalated_at is not None
        assert by_email[missing].status == AckStatus.missing
        assert all(s.status != StepStatus.pending for s in db.exec(
            select(HumanStep).where(HumanStep.subject_type == "drill")))
        actions = list(db.exec(select(Finding, CorrectiveAction)
                               .join(CorrectiveAction, col(CorrectiveAction.finding_id) == Finding.id)
                               .where(Finding.origin_type == "drill", Finding.origin_id == drill.id)))
        assert {f.severity for f, _ in actions} == {"high", "medium"} and len(actions) == 3
        assert all(a.due_at > utcnow() + timedelta(days=7) for _, a in actions)
        plan = db.get(ContinuityPlan, org["plan_id"])
        assert plan is not None and plan.last_tested_at is not None
        report = Path(drill.report_path or "").read_text(encoding="utf-8")
    assert missing_name in report and "Stairwell B, 2nd floor" in report and "not achieved" in report

    # The plan owner and the wardens receive the after-action report; action owners their actions.
    for reader in [org["owner"], *org["wardens"]]:
        until("after-action report", lambda r=reader: [
            m for m in smtp.messages(to=r) if m.subject.startswith("After-action report")])
    owned = until("corrective actions", lambda: [
        m for m in smtp.messages(to=org["owner"]) if m.subject.startswith("Corrective action")])
    assert "Recovery time not achieved" in owned[0].text
    with session() as db:
        assert verify(db).ok

    # A re-run for the same occasion changes nothing and sends nothing again.
    sent = len(smtp.messages())
    with session() as db:
        drill_key = db.get(Drill, result.drill_id).key  # type: ignore[union-attr]
    # An unscheduled drill is keyed by the run that started it: the same key is a re-run of that run.
    occasion = drill_key.removeprefix(f"{org['facility']}-fire_evacuation-")
    again = emergency_drill(facility=org["facility"], occasion=occasion)
    assert isinstance(again, DrillOutcome)
    assert again.drill_id == result.drill_id and (again.accounted, again.total) == (3, everyone)
    time.sleep(0.5)
    assert len(smtp.messages()) == sent, "a re-run sends nothing again"
    with session() as db:
        assert len(list(db.exec(select(Finding).where(Finding.origin_type == "drill",
                                                      Finding.origin_id == result.drill_id)))) == 3


def _step_of(url: str) -> int:
    from engine import links
    from registry import StepLink

    token = url.rsplit("/", 1)[-1]
    with session() as db:
        link = db.exec(select(StepLink).where(StepLink.token_hash == links.hash_token(token))).one()
        return link.step_id


def test_everyone_accounted_closes_early_meets_the_target_and_raises_no_findings(
        smtp: Mailbox, gateway: Gateway, prefect_api: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPS_DRILL_POLL_SECONDS", "0.2")
    get_settings.cache_clear()
    org = _building(occupants=2, rto_minutes=5)
    # As the scheduler starts a programme's drill: for its occasion.
    params = DrillParameters(facility=org["facility"], window_minutes=5, occasion="2026-09-01T09:00:00+00:00")
    thread, outcome = in_background(lambda: emergency_drill(**dict(params)))
    emails = [org["manager"], *org["people"], *org["wardens"]]
    smtp.wait_for(len(emails))
    started = time.monotonic()
    for email in emails:
        assert answer_link(gateway.client, _alert_link(smtp, email),
                           {"status": "accounted", "location": "Assembly point"}).status_code == 200
    thread.join(timeout=60)
    assert time.monotonic() - started < 30, "the drill closes once everyone is accounted for"
    result = outcome["result"]
    assert (result.accounted, result.total, result.findings) == (len(emails), len(emails), 0)
    assert result.recovery_minutes is not None and result.recovery_minutes < 5
    report = until("after-action mail", lambda: [
        m for m in smtp.messages(to=org["owner"]) if m.subject.startswith("After-action report")])
    assert "met" in report[0].text and "None: everyone was accounted for in time." in report[0].text
    with session() as db:
        drill = db.get(Drill, result.drill_id)
        assert drill is not None and not drill.unscheduled
        assert drill.scheduled_for is not None and drill.scheduled_for.isoformat() == "2026-09-01T09:00:00+00:00"
    assert "drill scheduled for 01 Sep 2026" in Path(result.report).read_text(encoding="utf-8")


def test_an_unknown_facility_or_an_empty_roster_is_refused_before_anything_is_sent(
        smtp: Mailbox, prefect_api: str) -> None:
    with session() as db:
        empty = factories.facility(db, occupants=[])
        code = empty.code
    with pytest.raises(ValueError, match="facility 'NOPE' does not exist"):
        emergency_drill(facility="NOPE")
    with pytest.raises(ValueError, match="has no active people on its roster"):
        emergency_drill(facility=code)
    with session() as db:
        assert db.exec(select(Drill)).first() is None and db.exec(select(HumanStep)).first() is None
    assert smtp.messages() == []


def test_a_preview_renders_the_alert_and_writes_nothing(smtp: Mailbox, prefect_api: str) -> None:
    org = _building(occupants=2)
    result = emergency_drill(facility=org["facility"], preview=True)
    assert isinstance(result, DrillOutcome) and result.status == "preview" and result.total == 5
    with session() as db:
        assert db.exec(select(Drill)).first() is None and db.exec(select(HumanStep)).first() is None
    assert smtp.messages() == []


def test_the_scheduler_starts_a_programme_only_when_its_cadence_comes_round(registry_db: str, prefect_api: str) -> None:
    org = _building(occupants=1)
    # The first look only starts the count: installing a programme must not set off a drill.
    assert emergency_drill_dispatch() == []
    with session() as db:
        program = db.exec(select(DrillProgram)).one()
        assert program.last_run_at is not None
        program.last_run_at = utcnow() - timedelta(days=400)
        db.add(program)
    [started] = emergency_drill_dispatch()
    assert started.startswith(f"{org['facility']} fire_evacuation due ")
    assert emergency_drill_dispatch() == [], "started once per occasion"


def test_a_continuity_exercise_is_measured_by_the_recovery_its_lead_reports(
        smtp: Mailbox, gateway: Gateway, prefect_api: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPS_DRILL_POLL_SECONDS", "0.2")
    get_settings.cache_clear()
    with session() as db:
        occupant, warden, lead = (factories.person(db, name) for name in ("Iris IT", "Wes Warden", "Lee Lead"))
        building = factories.facility(db, occupants=[occupant], wardens=[warden])
        plan = factories.continuity_plan(db, owner=lead, at=building, rto_minutes=240, rpo_minutes=60)
        factories.drill_program(db, building, kind="it_outage_tabletop", plan=plan, measure=DrillMeasure.recovery)
        code, emails, lead_email = building.code, [occupant.email, warden.email], lead.email
    params = DrillParameters(facility=code, kind="it_outage_tabletop", window_minutes=5)
    thread, outcome = in_background(lambda: emergency_drill(**dict(params)))
    [request] = [m for m in smtp.wait_for(3) if m.to == lead_email]
    assert request.subject.startswith("Exercise lead: report the recovery")
    assert "recovery within 240 minutes, data lost no more than 60 minutes" in request.text
    for email in emails:
        answer_link(gateway.client, _alert_link(smtp, email), {"status": "accounted", "location": "War room"})
    # Everyone has acknowledged, but the exercise waits for its lead's report.
    time.sleep(1)
    assert thread.is_alive()
    [url] = links_in(request.html)
    refused = answer_link(gateway.client, url, {"restored_after_minutes": "-5", "data_loss_minutes": "90"})
    assert refused.status_code == 422 and "positive number of minutes" in refused.text
    answered = answer_link(gateway.client, url, {"restored_after_minutes": "45", "data_loss_minutes": "90",
                                                 "note": "Restored from the nightly backup."})
    assert answered.status_code == 200
    result = finished(thread, outcome, "the exercise")
    assert (result.accounted, result.total, result.recovery_minutes, result.data_loss_minutes) == (2, 2, 45, 90)
    with session() as db:
        drill = db.get(Drill, result.drill_id)
        assert drill is not None and drill.measure == DrillMeasure.recovery and drill.data_loss_minutes == 90
        [(finding, action)] = db.exec(select(Finding, CorrectiveAction).join(
            CorrectiveAction, col(CorrectiveAction.finding_id) == Finding.id)
            .where(Finding.origin_type == "drill", Finding.origin_id == drill.id))
        assert finding.description == ("90 minutes of data or work were lost, against a recovery-point objective "
                                       "of 60 minutes.")
        assert action.owner_id == plan.owner_id
    report = Path(result.report).read_text(encoding="utf-8")
    assert "45.0 min" in report and "reported by Lee Lead" in report and "Data lost" in report
    assert "Restored from the nightly backup." in report
    mail = until("after-action mail", lambda: [
        m for m in smtp.messages(to=lead_email) if m.subject.startswith("After-action report")])
    assert "45.0 min (reported by Lee Lead) against a target of 240 min (met)" in mail[0].text
    assert "90 min against a target of 60 min (missed)" in mail[0].text


def _deployed_run(name: str) -> str:
    """A run of a real `emergency-drill-dispatch` deployment called `name` on the test server (nothing executes
    it)."""
    from prefect.client.orchestration import get_client

    deployment_id = emergency_drill_dispatch.to_deployment(name=name).apply()
    with get_client(sync_client=True) as client:
        return str(client.create_flow_run_from_deployment(deployment_id, parameters={}).id)


def test_a_due_drill_the_prefect_api_refused_to_start_is_started_by_the_next_look(
        registry_db: str, prefect_api: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from prefect.client.orchestration import get_client

    from flows.continuity.drill.dispatch import start_due_drills

    org = _building(occupants=1)
    with session() as db:
        program = db.exec(select(DrillProgram)).one()
        program.last_run_at = utcnow() - timedelta(days=400)
        db.add(program)
    name = f"drill-scheduler-{uuid.uuid4().hex[:8]}"
    # The dispatcher runs as its deployment's run; the drill deployment it starts is not there (the API answers
    # 404), as a Prefect server that refuses or drops the call would.
    monkeypatch.setenv("PREFECT__FLOW_RUN_ID", _deployed_run(name))
    with pytest.raises(Exception):  # noqa: B017 (whatever Prefect raises; what matters is what is left)
        start_due_drills.fn(f"emergency-drill/{name}")
    emergency_drill.to_deployment(name=name).apply()
    [started] = start_due_drills.fn(f"emergency-drill/{name}")
    assert started.startswith(f"{org['facility']} fire_evacuation: flow run "), "the occasion was kept"
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(uuid.UUID(started.rsplit(" ", 1)[1]))
    assert run.idempotency_key is not None and run.idempotency_key.startswith("drill-")
    assert start_due_drills.fn(f"emergency-drill/{name}") == [], "started once per occasion"
