"""Continuity plan reviews with real parts only: the registry, an SMTP server, the gateway over HTTP, Prefect.

Called as a plain function (not under a deployment) the flow reviews each due plan in its own run, one after
another, pausing in place for each answer; the tests answer the links from the mail over HTTP, as a browser would.
"""

from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError
from sqlmodel import col, select

from engine.settings import get_settings
from engine.sweep import sweep
from flows.continuity.plan_review.dispatch import DispatchParameters, continuity_review_dispatch, start_reviews
from flows.continuity.plan_review.flow import ReviewOutcome, continuity_review
from flows.continuity.plan_review.forms import PlanReview as Form
from flows.continuity.plan_review.rules import review_due_at, review_occasion
from flows.continuity.plan_review.tasks import ask_owner, due_plans, settle
from registry import (
    AuditEvent,
    ContinuityPlan,
    CorrectiveAction,
    Finding,
    FindingStatus,
    HumanStep,
    Notification,
    Occasion,
    OccasionStatus,
    Person,
    StepStatus,
    session,
)
from registry.clock import as_utc, utcnow
from registry.trail import verify
from tests import factories
from tests.conftest import Gateway, Mailbox
from tests.flows.background import finished, in_background
from tests.links import answer_link, links_in

LONDON = "Europe/London"
NOW = datetime(2026, 5, 20, 9, 0, tzinfo=UTC)
LEAD = timedelta(days=14)
JUNE_1 = "0 9 1 6 *"  # yearly, 1 June 09:00 London (08:00 UTC)


def _utc(year: int, month: int, day: int, hour: int = 0) -> datetime:
    return datetime(year, month, day, hour, tzinfo=UTC)


@pytest.mark.parametrize(("cadence", "last_reviewed", "lead", "due"), [
    pytest.param(JUNE_1, None, LEAD, NOW, id="never reviewed: due now"),
    pytest.param(JUNE_1, _utc(2025, 7, 1), LEAD, _utc(2026, 6, 1, 8), id="occurrence within the lead time"),
    pytest.param(JUNE_1, _utc(2025, 5, 25), LEAD, _utc(2026, 6, 1, 8),
                 id="last year's early review counted for last year's occurrence"),
    pytest.param(JUNE_1, _utc(2026, 5, 19), LEAD, None, id="reviewed early for this occurrence: not due"),
    pytest.param(JUNE_1, _utc(2024, 6, 10), LEAD, _utc(2025, 6, 1, 8), id="last year's review missed: overdue"),
    pytest.param("0 9 1 7 *", _utc(2025, 7, 1), LEAD, None, id="occurrence beyond the lead time"),
    pytest.param("0 10 3 6 *", _utc(2025, 7, 1), LEAD, None, id="occurrence exactly at the lead time: not yet"),
    pytest.param(JUNE_1, _utc(2025, 5, 25), timedelta(0), _utc(2025, 6, 1, 8), id="no lead: the bare rule"),
    pytest.param("0 9 1 1,4,7,10 *", _utc(2026, 4, 2), timedelta(days=45), _utc(2026, 7, 1, 8),
                 id="quarterly with a long lead"),
])
def test_when_a_plan_is_due(cadence: str, last_reviewed: datetime | None, lead: timedelta,
                            due: datetime | None) -> None:
    assert review_due_at(cadence, last_reviewed, NOW, lead, LONDON) == due


TODAY = date(2026, 5, 20)


@pytest.mark.parametrize(("due", "open_on", "missed_on", "occasion"), [
    pytest.param(_utc(2026, 6, 1, 8), None, None, date(2026, 6, 1), id="keyed by the day it is due"),
    pytest.param(_utc(2026, 5, 31, 23), None, None, date(2026, 6, 1), id="that day in the organisation's zone"),
    pytest.param(None, None, None, None, id="not due: nothing"),
    pytest.param(_utc(2026, 6, 1, 8), date(2026, 5, 12), None, date(2026, 5, 12),
                 id="an open request keeps its occasion"),
    pytest.param(None, date(2026, 5, 12), None, date(2026, 5, 12), id="even when the rule no longer says due"),
    pytest.param(_utc(2026, 6, 1, 8), None, date(2026, 5, 19), date(2026, 5, 20), id="missed: asked again next day"),
    pytest.param(_utc(2026, 6, 1, 8), None, date(2026, 5, 15), date(2026, 5, 16), id="keyed by that day, stably"),
    pytest.param(_utc(2026, 6, 1, 8), None, TODAY, None, id="missed today: not again today"),
])
def test_which_occasion_a_request_is_keyed_by(due: datetime | None, open_on: date | None, missed_on: date | None,
                                              occasion: date | None) -> None:
    assert review_occasion(due, today=TODAY, tz=LONDON, open_on=open_on, missed_on=missed_on) == occasion


@pytest.mark.parametrize(("answer", "error"), [
    ({"decision": "confirm"}, None),
    ({"decision": "confirm", "note": "Checked with the site team."}, None),
    ({"decision": "revise", "note": "Second data centre.", "rto_minutes": "30"}, None),
    ({"decision": "revise", "note": "  "}, "A revision needs a note of what changed."),
    ({"decision": "revise", "note": "x", "rto_minutes": "0"}, "The RTO must be a positive number of minutes."),
    ({"decision": "revise", "note": "x", "rpo_minutes": "-5"}, "The RPO must be a positive number of minutes."),
    ({"decision": "confirm", "rto_minutes": "30"}, "to change its targets or summary, choose Revise"),
])
def test_the_form_says_what_is_wrong(answer: dict[str, str], error: str | None) -> None:
    if error is None:
        Form.model_validate(answer)
    else:
        with pytest.raises(ValidationError, match=error):
            Form.model_validate(answer)


def _person(name: str, manager: Person | None = None) -> Person:
    with session() as db:
        return factories.person(db, name, manager=manager)


def _local_today() -> date:
    return utcnow().astimezone(ZoneInfo(get_settings().timezone)).date()


def _plan(owner: Person, *, due_in_days: int | None = 7, **fields: Any) -> ContinuityPlan:
    """A yearly plan whose occurrence is `due_in_days` from today, reviewed after last year's (None: never)."""
    on = _local_today() + timedelta(days=due_in_days or 0)
    with session() as db:
        plan = factories.continuity_plan(
            db, owner=owner, review_cadence=f"0 9 {on.day} {on.month} *",
            last_reviewed_at=None if due_in_days is None else utcnow() - timedelta(days=300))
        plan.summary = fields.pop("summary", "Fail over to the Leeds site; restore from the nightly backup.")
        plan.last_tested_at = utcnow() - timedelta(days=40)
        for name, value in fields.items():
            setattr(plan, name, value)
        db.add(plan)
        return plan


def _reload(plan: ContinuityPlan) -> ContinuityPlan:
    with session() as db:
        found = db.get(ContinuityPlan, plan.id)
        assert found is not None
        return found


def _events(action: str) -> list[AuditEvent]:
    with session() as db:
        return list(db.exec(select(AuditEvent).where(AuditEvent.action == action).order_by(col(AuditEvent.id))))


def _snapshot() -> tuple[list[str], int, list[tuple[int | None, str]], list[dict[str, Any]]]:
    """What a re-run must leave as it was: messages queued, trail length, steps, plans."""
    with session() as db:
        return (sorted(db.exec(select(Notification.idempotency_key))), len(db.exec(select(AuditEvent)).all()),
                [(s.id, s.status.value) for s in db.exec(select(HumanStep).order_by(col(HumanStep.id)))],
                [p.model_dump() for p in db.exec(select(ContinuityPlan).order_by(col(ContinuityPlan.id)))])






def _review_link(smtp: Mailbox, owner: Person, count: int = 1) -> tuple[Any, str]:
    mails = [m for m in smtp.wait_for(count, seconds=30, to=owner.email) if m.subject.startswith("Review needed")]
    assert len(mails) == count
    return mails[0], links_in(mails[0].html)[0]  # newest first


def _paused_for(plan: ContinuityPlan, seconds: float = 30) -> HumanStep:
    """The plan's pending request, once its run waits: an answer before the pause would be left to the sweep."""
    from prefect.client.orchestration import get_client

    deadline = time.monotonic() + seconds
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            with session() as db:
                step = db.exec(select(HumanStep).where(HumanStep.subject_id == plan.id,
                                                       HumanStep.status == StepStatus.pending)).first()
            run = client.read_flow_run(UUID(step.flow_run_id)) if step and step.flow_run_id else None
            if step is not None and run is not None and run.state is not None and run.state.is_paused():
                return step
            time.sleep(0.1)
    raise AssertionError(f"no run paused for a review of {plan.code}")


def test_the_registry_selection_follows_the_rule(any_db: str) -> None:
    owner = _person("Olive Owner")
    soon, later, never = _plan(owner, due_in_days=7), _plan(owner, due_in_days=30), _plan(owner, due_in_days=None)
    _plan(owner, due_in_days=None, active=False)
    with session() as db:
        plans = list(db.exec(select(ContinuityPlan).where(col(ContinuityPlan.active).is_(True))))
        found = {d.code: d for d in due_plans(db, plans, LEAD, utcnow())}
    assert set(found) == {soon.code, never.code}, f"{later.code} falls due after the lead time"
    assert found[soon.code].occasion == _local_today() + timedelta(days=7)
    assert found[never.code].occasion == _local_today()


def test_an_answer_is_applied_once_on_either_database(any_db: str, gateway: Gateway, smtp: Mailbox) -> None:
    """The request, the answer over HTTP and the conditional update, without Prefect: tasks called as functions."""
    owner = _person("Olive Owner")
    plan = _plan(owner, rto_minutes=240)
    with session() as db:
        [target] = due_plans(db, [db.get(ContinuityPlan, plan.id)], LEAD, utcnow())  # type: ignore[list-item]
    step_id = ask_owner.fn(target, 5)
    assert ask_owner.fn(target, 5) == step_id, "asked once per occasion"
    _, link = _review_link(smtp, owner)
    assert answer_link(gateway.client, link, {"decision": "revise", "rto_minutes": "90", "note": "New UPS."}) \
        .status_code == 200

    assert settle.fn(plan.id or 0, step_id).outcome == "revised"
    assert settle.fn(plan.id or 0, step_id).outcome == "already settled"
    after = _reload(plan)
    assert (after.rto_minutes, after.version) == (90, 2) and len(_events("continuity_plan.revised")) == 1
    with session() as db:
        assert due_plans(db, [after], LEAD, utcnow()) == [], "reviewed: not due again this year"
        assert verify(db).ok


def test_a_confirmation_records_the_review_once(prefect_api: str, gateway: Gateway, smtp: Mailbox) -> None:
    owner = _person("Olive Owner")
    plan = _plan(owner, rto_minutes=240, rpo_minutes=60, version=3)
    thread, outcome = in_background(lambda: continuity_review(plan=plan.code))

    mail, link = _review_link(smtp, owner)
    assert mail.subject == f"Review needed: continuity plan {plan.code} ({plan.name})"
    due_on = (_local_today() + timedelta(days=7)).strftime("%d %b %Y")
    for fact in (f"is due on {due_on}", "240 minutes", "60 minutes", "Fail over to the Leeds site"):
        assert fact in mail.text, fact
    page = gateway.client.get(link)
    assert "New RTO (minutes)" in page.text and "Confirm: the plan stands" in page.text and "240" in page.text
    step = _paused_for(plan)
    assert answer_link(gateway.client, link, {"decision": "confirm", "note": "Walked through it with IT."}) \
        .status_code == 200
    result = finished(thread, outcome, "the review run")

    assert [(r.plan, r.outcome, r.version) for r in result.reviews] == [(plan.code, "confirmed", 3)]
    reviewed = _reload(plan)
    assert reviewed.last_reviewed_at is not None and as_utc(reviewed.last_reviewed_at) > utcnow() - timedelta(minutes=1)
    assert (reviewed.version, reviewed.rto_minutes, reviewed.summary) == (3, 240, plan.summary)
    [event] = _events("continuity_plan.confirmed")
    assert event.actor == owner.email and event.entity_id == plan.id
    assert event.data["step_id"] == step.id and event.data["note"] == "Walked through it with IT."

    before, sent = _snapshot(), len(smtp.messages())
    again = continuity_review(plan=plan.code)
    assert (again.reviews, again.detail) == ([], f"{plan.code} is not due for review")
    assert settle.fn(plan.id or 0, step.id or 0).outcome == "already settled", "the update is conditional"
    assert _snapshot() == before and len(smtp.messages()) == sent, "a re-run applies and sends nothing twice"
    with session() as db:
        assert verify(db).ok


def test_a_revision_changes_the_targets_after_the_form_refused_what_was_wrong(
        prefect_api: str, gateway: Gateway, smtp: Mailbox) -> None:
    owner = _person("Olive Owner")
    plan = _plan(owner, rto_minutes=240, rpo_minutes=60)
    thread, outcome = in_background(lambda: continuity_review(plan=plan.code))
    _, link = _review_link(smtp, owner)
    _paused_for(plan)
    untouched = _snapshot()

    no_note = answer_link(gateway.client, link, {"decision": "revise", "rto_minutes": "120", "note": ""})
    assert no_note.status_code == 422 and "A revision needs a note of what changed." in no_note.text
    assert 'value="120"' in no_note.text, "what the owner typed is shown again"
    zero = answer_link(gateway.client, link, {"decision": "revise", "rto_minutes": "0", "note": "Faster."})
    assert zero.status_code == 422 and "The RTO must be a positive number of minutes." in zero.text
    assert _snapshot() == untouched, "a refused answer changes nothing"

    revised = answer_link(gateway.client, link, {
        "decision": "revise", "rto_minutes": "120", "rpo_minutes": "", "summary": "Fail over to Leeds and Bristol.",
        "note": "Bristol added as a second recovery site."})
    assert revised.status_code == 200
    result = finished(thread, outcome, "the review run")

    assert [(r.outcome, r.version) for r in result.reviews] == [("revised", 2)]
    now = _reload(plan)
    assert (now.rto_minutes, now.rpo_minutes, now.version, now.summary) == \
        (120, 60, 2, "Fail over to Leeds and Bristol.")
    assert now.last_reviewed_at is not None
    [event] = _events("continuity_plan.revised")
    assert event.actor == owner.email and event.data["note"] == "Bristol added as a second recovery site."
    assert event.data["changes"] == {
        "rto_minutes": {"old": 240, "new": 120}, "rpo_minutes": {"old": 60, "new": 60},
        "summary": {"old": plan.summary, "new": "Fail over to Leeds and Bristol."}, "version": {"old": 1, "new": 2}}
    assert _events("continuity_plan.confirmed") == []


def test_the_daily_run_reviews_each_due_plan_and_a_missed_review_goes_to_the_manager(
        prefect_api: str, gateway: Gateway, smtp: Mailbox) -> None:
    manager = _person("Max Manager")
    owner = _person("Olive Owner", manager=manager)
    first, silent = _plan(owner, due_in_days=3), _plan(owner, due_in_days=None)
    _plan(owner, due_in_days=60)
    thread, outcome = in_background(lambda: continuity_review())

    _, link = _review_link(smtp, owner)
    _paused_for(first)
    assert answer_link(gateway.client, link, {"decision": "confirm"}).status_code == 200
    mail, _ = _review_link(smtp, owner, count=2)  # the next plan is asked once the first is settled
    assert silent.code in mail.subject and "has never been reviewed" in mail.text
    step = _paused_for(silent)
    sweep(now=as_utc(step.expires_at) + timedelta(seconds=1))  # expires the request and resumes the run
    result = finished(thread, outcome, "the review run")

    assert result.due == [first.code, silent.code]
    assert [(r.plan, r.outcome) for r in result.reviews] == [(first.code, "confirmed"), (silent.code, "missed")]
    [told] = smtp.wait_for(1, to=manager.email)
    assert told.subject == f"Continuity plan review missed: {silent.code} ({silent.name})"
    assert "Olive Owner did not confirm or revise" in told.text and "asks Olive Owner again" in told.text
    [event] = _events("continuity_plan.review_missed")
    assert event.entity_id == silent.id and event.actor == "continuity-review"
    assert event.data["manager_told"] == manager.email and event.data["outcome"] == "expired"
    assert _reload(silent).last_reviewed_at is None, "a missed review leaves the plan due"

    with session() as db:  # the lapse is a finding with a corrective action for the owner, on the request's round
        [finding] = db.exec(select(Finding).where(Finding.origin_type == "continuity_plan",
                                                  Finding.origin_id == silent.id)).all()
        assert (finding.code, finding.process, finding.status, finding.verifier_id) == (
            "review-lapsed-never-reviewed", "continuity-plan-review", FindingStatus.open, manager.id)
        [action] = db.exec(select(CorrectiveAction).where(CorrectiveAction.finding_id == finding.id)).all()
        assert action.owner_id == owner.id and action.step_id is not None
        round_ = db.get(Occasion, finding.occasion_id)
        assert round_ is not None and (round_.key, round_.status, round_.phase) == (
            step.key, OccasionStatus.closed, "missed")
    [notice] = [m for m in smtp.wait_for(3, to=owner.email) if m.subject.startswith("Corrective action assigned")]
    assert silent.code in notice.subject and "asked to review it again from tomorrow" in notice.text
    assert "Report the action done" in notice.html and gateway.client.get(links_in(notice.html)[0]).status_code == 200

    before, sent = _snapshot(), len(smtp.messages())
    again = continuity_review()
    assert again.due == [] and _snapshot() == before and len(smtp.messages()) == sent, \
        "the same day nobody is asked again, and nothing is sent twice"
    with session() as db:
        plans = list(db.exec(select(ContinuityPlan).where(ContinuityPlan.id == silent.id)))
        [tomorrow] = due_plans(db, plans, LEAD, utcnow() + timedelta(days=1))
    assert (tomorrow.occasion, tomorrow.asked_before, tomorrow.open_step_id) == \
        (_local_today() + timedelta(days=1), True, None), "the next day's run asks again, under a new key"


def test_preview_writes_and_sends_nothing(prefect_api: str, smtp: Mailbox) -> None:
    owner = _person("Olive Owner")
    plans = [_plan(owner), _plan(owner, due_in_days=None)]
    before = _snapshot()
    state = continuity_review(preview=True, return_state=True)
    result: ReviewOutcome = state.result()  # type: ignore[assignment]
    assert result.status == "preview" and result.due == [p.code for p in plans]
    assert result.detail == "2 review request(s) rendered as an artifact; nothing sent"
    assert _snapshot() == before and before[:3] == ([], 0, []), "no step, message, trail event or plan change"
    assert smtp.messages() == []

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        [artifact] = client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id])))
    assert all(f"Review needed: continuity plan {p.code}" in str(artifact.data) for p in plans)


def test_an_unknown_plan_is_named_in_the_error(prefect_api: str, registry_db: str) -> None:
    with pytest.raises(ValueError, match="continuity plan 'NOPE' does not exist"):
        continuity_review(plan="NOPE")


def test_the_dispatcher_starts_one_review_run_per_plan_and_occasion(prefect_api: str, registry_db: str) -> None:
    """The dispatcher's fan-out against the real API: runs are created (nobody executes them here)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
    from prefect.states import Crashed

    name = f"continuity-{uuid4().hex[:8]}"
    registered: Any = continuity_review.to_deployment(name=name)  # sync here; typed for async callers too
    deployment_id = registered.apply()
    reviews = f"{continuity_review.name}/{name}"
    owner = _person("Olive Owner")
    plans = [_plan(owner), _plan(owner, due_in_days=None), _plan(owner, due_in_days=60)]
    with session() as db:
        due = due_plans(db, [p for p in (db.get(ContinuityPlan, p.id) for p in plans) if p], LEAD, utcnow())

    def _runs() -> dict[str, Any]:
        with get_client(sync_client=True) as client:
            found = client.read_flow_runs(
                deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])))
        return {run.name: run for run in found}

    assert start_reviews.fn(due, DispatchParameters(answer_days=3), reviews) == [plans[0].code, plans[1].code]
    assert start_reviews.fn(due, DispatchParameters(answer_days=3), reviews) == [plans[0].code, plans[1].code]
    runs = _runs()
    assert sorted(runs) == sorted(f"review {d.code} ({d.occasion.isoformat()})" for d in due), "one run per occasion"
    first = runs[f"review {due[0].code} ({due[0].occasion.isoformat()})"]
    assert first.parameters == {"plan": due[0].code, "lead_days": 14, "answer_days": 3, "preview": False}

    with get_client(sync_client=True) as client:
        client.set_flow_run_state(first.id, Crashed(), force=True)
    start_reviews.fn(due, DispatchParameters(answer_days=3), reviews)
    assert len(_runs()) == 3 and f"{first.name}, again" in _runs(), "a crashed run's plan is started again"

    shown = continuity_review_dispatch(preview=True)
    assert (shown.status, shown.due) == ("preview", [plans[0].code, plans[1].code]) and len(_runs()) == 3
