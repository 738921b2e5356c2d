"""The plan review's tasks: which plans are due, ask the owner, apply the answer (or the silence)."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from prefect import task
from prefect.artifacts import create_markdown_artifact
from pydantic import BaseModel
from sqlalchemy import or_, update
from sqlmodel import Session, col, select

from engine import notify, runs
from engine.deadlines import answer_window, working_days_from_now
from engine.human_steps import ask
from engine.settings import get_settings
from flows.continuity.plan_review.forms import FORM, PlanReview
from flows.continuity.plan_review.rules import review_due_at, review_occasion
from registry import AuditEvent, ContinuityPlan, HumanStep, Person, StepStatus, session, trail
from registry.clock import as_utc, utcnow
from registry.people import get_person

ACTOR = "continuity-review"
SUBJECT = "continuity_plan"
CONFIRMED = "continuity_plan.confirmed"
REVISED = "continuity_plan.revised"
MISSED = "continuity_plan.review_missed"
REQUEST = "continuity/plan_review/request"
MISSED_NOTICE = "continuity/plan_review/missed"
# Step details the page does not show: the occasion the request is keyed by, and when the review was due.
_OCCASION = "_occasion"
_REVIEW_DUE = "_review_due"


class DuePlan(BaseModel):
    """A plan to review now, and the occasion its request is keyed by."""

    plan_id: int
    code: str
    occasion: date
    review_due: datetime
    asked_before: bool = False
    open_step_id: int | None = None
    waiting: bool = False  # its open request is still unanswered


class PlanResult(BaseModel):
    plan: str
    occasion: str
    outcome: str
    version: int


def _plan(db: Session, plan_id: int) -> ContinuityPlan:
    found = db.get(ContinuityPlan, plan_id)
    if found is None:
        raise ValueError(f"continuity plan {plan_id} does not exist")
    return found


def _step_key(plan_id: int, occasion: date) -> str:
    return f"plan-review-{plan_id}-{occasion.isoformat()}"


def due_plans(db: Session, plans: list[ContinuityPlan], lead: timedelta, now: datetime) -> list[DuePlan]:
    """Of `plans`, those to review now, each with its occasion: the due rule applied to what was asked before.

    Two queries whatever the number of plans: their review requests, and their recorded misses.
    """
    tz = get_settings().timezone
    today = as_utc(now).astimezone(ZoneInfo(tz)).date()
    ids = [p.id for p in plans]
    steps: dict[int, list[HumanStep]] = {}
    for step in db.exec(select(HumanStep).where(HumanStep.subject_type == SUBJECT, HumanStep.form == FORM,
                                                col(HumanStep.subject_id).in_(ids)).order_by(col(HumanStep.id))):
        steps.setdefault(step.subject_id, []).append(step)
    misses: dict[int, list[AuditEvent]] = {}
    for event in db.exec(select(AuditEvent).where(AuditEvent.action == MISSED, AuditEvent.entity_type == SUBJECT,
                                                  col(AuditEvent.entity_id).in_(ids)).order_by(col(AuditEvent.id))):
        misses.setdefault(event.entity_id, []).append(event)
    found: list[DuePlan] = []
    for plan in plans:
        assert plan.id is not None
        since = as_utc(plan.last_reviewed_at) if plan.last_reviewed_at else None
        recorded = {event.data.get("step_id") for event in misses.get(plan.id, [])}
        # A request asked after the last review and not settled yet: an answered one would have moved the review.
        unsettled = [s for s in steps.get(plan.id, []) if (since is None or as_utc(s.created_at) > since)
                     and (s.status in (StepStatus.pending, StepStatus.answered) or s.id not in recorded)]
        missed = [as_utc(e.at) for e in misses.get(plan.id, []) if since is None or as_utc(e.at) > since]
        open_step = unsettled[-1] if unsettled else None
        due = review_due_at(plan.review_cadence, plan.last_reviewed_at, now, lead, tz)
        occasion = review_occasion(
            due, today=today, tz=tz,
            open_on=date.fromisoformat(open_step.details[_OCCASION]) if open_step else None,
            missed_on=max(missed).astimezone(ZoneInfo(tz)).date() if missed else None)
        if occasion is not None:
            found.append(DuePlan(plan_id=plan.id, code=plan.code, occasion=occasion, review_due=due or now,
                                 asked_before=bool(missed), open_step_id=open_step.id if open_step else None,
                                 waiting=open_step is not None and open_step.status == StepStatus.pending))
    return found


@task
def plans_due(code: str | None, lead_days: int) -> list[DuePlan]:
    """The plan asked for (when due), or every active plan due for review within the lead time."""
    with session() as db:
        query = select(ContinuityPlan).where(col(ContinuityPlan.active).is_(True))
        if code:
            if db.exec(select(ContinuityPlan.id).where(ContinuityPlan.code == code)).first() is None:
                raise ValueError(f"continuity plan {code!r} does not exist")
            query = query.where(ContinuityPlan.code == code)
        plans = list(db.exec(query.order_by(col(ContinuityPlan.id))))
        return due_plans(db, plans, timedelta(days=lead_days), utcnow())


def _plan_context(db: Session, plan: ContinuityPlan, target: DuePlan) -> dict[str, Any]:
    owner = get_person(db, plan.owner_id or 0)
    return {"plan": {"code": plan.code, "name": plan.name, "rto_minutes": plan.rto_minutes,
                     "rpo_minutes": plan.rpo_minutes, "version": plan.version, "summary": plan.summary,
                     "last_reviewed_at": plan.last_reviewed_at, "last_tested_at": plan.last_tested_at},
            "owner": {"name": owner.name}, "review_due": target.review_due,
            "overdue": target.review_due <= utcnow(), "asked_before": target.asked_before}


def _day(moment: datetime | None) -> str:
    if moment is None:
        return "never"
    return f"{as_utc(moment).astimezone(ZoneInfo(get_settings().timezone)):%Y-%m-%d}"


@task
def ask_owner(target: DuePlan, answer_days: int) -> int:
    """The review request for this occasion, asked of the owner once however often the run restarts."""
    with session() as db:
        plan = _plan(db, target.plan_id)
        context = _plan_context(db, plan, target)
        due, final = answer_window(answer_days)
        key = _step_key(target.plan_id, target.occasion)
        step = ask(db, key=key, person_id=plan.owner_id or 0, form=FORM,
                   title=f"Review continuity plan {plan.code}: {plan.name}", subject_type=SUBJECT,
                   subject_id=target.plan_id, due_at=due, expires_at=final, flow_run_id=runs.current_run_id(),
                   actor=ACTOR,
                   details={"plan": f"{plan.name} ({plan.code})", "RTO (minutes)": plan.rto_minutes,
                            "RPO (minutes)": plan.rpo_minutes, "version": plan.version,
                            "last reviewed": _day(plan.last_reviewed_at), "last tested": _day(plan.last_tested_at),
                            "summary": plan.summary, "review due": _day(target.review_due),
                            _OCCASION: target.occasion.isoformat(), _REVIEW_DUE: target.review_due.isoformat()})
        rows = notify.enqueue(db, key=key, recipient_id=step.person_id, template=REQUEST,
                              context={**context, "recipient": notify.recipient(get_person(db, step.person_id)),
                                       "step_id": step.id, "due_at": step.due_at})
        ids = [r.id for r in rows if r.id is not None]
        step_id = step.id or 0
    notify.deliver_due(ids=ids)
    return step_id


def _answered(db: Session, plan: ContinuityPlan, step: HumanStep, occasion: str) -> str:
    """Apply a confirmation or revision once: conditional on no review recorded since the request was asked."""
    answer = PlanReview.model_validate(step.answer or {})
    now = utcnow()
    values: dict[str, Any] = {"last_reviewed_at": now}
    new = {"rto_minutes": plan.rto_minutes if answer.rto_minutes is None else answer.rto_minutes,
           "rpo_minutes": plan.rpo_minutes if answer.rpo_minutes is None else answer.rpo_minutes,
           "summary": answer.summary.strip() or plan.summary, "version": plan.version + 1}
    if answer.decision == "revise":
        values |= {**new, "version": col(ContinuityPlan.version) + 1}
    claimed = db.execute(update(ContinuityPlan).where(
        col(ContinuityPlan.id) == plan.id,
        or_(col(ContinuityPlan.last_reviewed_at).is_(None), col(ContinuityPlan.last_reviewed_at) < step.created_at))
        .values(**values).execution_options(synchronize_session=False))
    if claimed.rowcount != 1:  # type: ignore[attr-defined]
        return "already settled"
    answerer = get_person(db, step.answered_by_id or step.person_id)
    data: dict[str, Any] = {"step_id": step.id, "occasion": occasion, "note": answer.note.strip(),
                            "on_behalf_of": get_person(db, step.person_id).email
                            if answerer.id != step.person_id else None}
    if answer.decision == "confirm":
        trail.record(db, actor=answerer.email, action=CONFIRMED, entity_type=SUBJECT, entity_id=plan.id or 0,
                     data={**data, "version": plan.version, "rto_minutes": plan.rto_minutes,
                           "rpo_minutes": plan.rpo_minutes})
        return "confirmed"
    old = {name: getattr(plan, name) for name in new}
    trail.record(db, actor=answerer.email, action=REVISED, entity_type=SUBJECT, entity_id=plan.id or 0,
                 data={**data, "changes": {name: {"old": old[name], "new": new[name]} for name in new}})
    return "revised"


def _missed(db: Session, plan: ContinuityPlan, step: HumanStep, occasion: str) -> list[int]:
    """Record the miss once and tell the owner's manager of an expired request; the plan stays due."""
    recorded = db.exec(select(AuditEvent).where(AuditEvent.action == MISSED, AuditEvent.entity_type == SUBJECT,
                                                AuditEvent.entity_id == plan.id))
    if any(event.data.get("step_id") == step.id for event in recorded):
        return []
    owner = get_person(db, plan.owner_id or 0)
    asked = get_person(db, step.person_id)
    manager = db.get(Person, owner.manager_id) if owner.manager_id else None
    told = manager if manager is not None and manager.active and step.status == StepStatus.expired else None
    trail.record(db, actor=ACTOR, action=MISSED, entity_type=SUBJECT, entity_id=plan.id or 0,
                 data={"step_id": step.id, "occasion": occasion, "outcome": step.status.value,
                       "asked": asked.email, "owner": owner.email,
                       "manager_told": told.email if told else None})
    if told is None:
        return []
    target = DuePlan(plan_id=plan.id or 0, code=plan.code, occasion=date.fromisoformat(occasion),
                     review_due=datetime.fromisoformat(str(step.details[_REVIEW_DUE])))
    rows = notify.enqueue(db, key=f"{step.key}-missed", recipient_id=told.id or 0, template=MISSED_NOTICE,
                          context={**_plan_context(db, plan, target), "recipient": notify.recipient(told),
                                   "asked": {"name": asked.name},
                                   "expired_at": step.expires_at})
    return [r.id for r in rows if r.id is not None]


@task
def settle(plan_id: int, step_id: int) -> PlanResult:
    """What the owner's answer (or silence) means for the plan, applied once however often this runs."""
    ids: list[int] = []
    with session() as db:
        plan = _plan(db, plan_id)
        step = db.get(HumanStep, step_id)
        assert step is not None
        occasion = str(step.details.get(_OCCASION, ""))
        if step.status == StepStatus.pending:
            outcome = "waiting"
        elif step.status == StepStatus.answered:
            outcome = _answered(db, plan, step, occasion)
        else:
            ids = _missed(db, plan, step, occasion)
            outcome = "missed"
        db.refresh(plan)
        result = PlanResult(plan=plan.code, occasion=occasion, outcome=outcome, version=plan.version)
    notify.deliver_due(ids=ids)
    return result


@task
def preview_requests(due: list[DuePlan], answer_days: int) -> str:
    """Render each review request a run would send now, as an artifact; nothing is written or sent."""
    parts: list[str] = []
    fresh = [target for target in due if target.open_step_id is None]
    with session() as db:
        for target in fresh:
            plan = _plan(db, target.plan_id)
            parts.append(notify.preview_for(get_person(db, plan.owner_id or 0), REQUEST, {
                **_plan_context(db, plan, target), "step_id": 0, "due_at": working_days_from_now(answer_days)}))
    create_markdown_artifact("\n".join(parts) or "No continuity plan review would be requested.",
                             description="Preview of continuity plan review requests")
    return (f"{len(fresh)} review request(s) rendered as an artifact; nothing sent"
            + (f" ({len(due) - len(fresh)} already asked)" if len(fresh) < len(due) else ""))


