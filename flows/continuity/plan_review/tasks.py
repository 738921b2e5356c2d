"""The plan review's tasks: which plans are due, ask the owner, apply the answer (or the silence)."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from prefect import task
from pydantic import BaseModel
from sqlalchemy import or_, update
from sqlmodel import Session, col, select

from engine import notify, occasions, runs
from engine.answers import answer_of
from engine.deadlines import answer_window, working_days_from_now
from engine.findings import ActionSpec, Origin, raise_finding, working_days_for
from engine.settings import get_settings
from engine.work import preview, request, unit
from flows.continuity.plan_review import PROCESS, rules
from flows.continuity.plan_review.forms import FORM, PlanReview
from registry import ContinuityPlan, Criticality, HumanStep, Occasion, OccasionStatus, Person, StepStatus, trail
from registry.clock import as_utc, utcnow
from registry.people import get_person

ACTOR = PROCESS.actor
SUBJECT = "continuity_plan"
CONFIRMED = "continuity_plan.confirmed"
REVISED = "continuity_plan.revised"
MISSED = "continuity_plan.review_missed"
REQUEST = "continuity/plan_review/request"
MISSED_NOTICE = "continuity/plan_review/missed"
ACTION_NOTICE = "continuity/plan_review/action"
LAPSE_SEVERITY = Criticality.medium
# A request's round (its occasion, keyed as the request) moves asked → confirmed | revised | settled | missed.
ASKED, LAPSED = "asked", "missed"
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


def _lapses(db: Session, keys: list[str]) -> dict[str, datetime]:
    """When the lapse of each of these requests was recorded (its round closed as missed), by request key."""
    rounds = db.exec(select(Occasion).where(Occasion.process == PROCESS.name, col(Occasion.key).in_(keys),
                                            Occasion.phase == LAPSED))
    return {r.key: as_utc(r.closed_at or r.opened_at) for r in rounds}


def due_plans(db: Session, plans: list[ContinuityPlan], lead: timedelta, now: datetime) -> list[DuePlan]:
    """Of `plans`, those to review now, each with its occasion: rules.review_now over what was asked before.

    Two queries whatever the number of plans: their review requests, and the rounds of those that lapsed.
    """
    tz = get_settings().timezone
    ids = [p.id for p in plans if p.id is not None]
    steps = list(db.exec(select(HumanStep).where(HumanStep.subject_type == SUBJECT, HumanStep.form == FORM,
                                                 col(HumanStep.subject_id).in_(ids)).order_by(col(HumanStep.id))))
    missed = _lapses(db, [step.key for step in steps])
    asked: dict[int, list[rules.Request]] = {}
    for step in steps:
        asked.setdefault(step.subject_id, []).append(rules.Request(
            step_id=step.id or 0, asked_at=as_utc(step.created_at),
            occasion=date.fromisoformat(step.details[_OCCASION]), pending=step.status == StepStatus.pending,
            answered=step.status == StepStatus.answered, missed_at=missed.get(step.key)))
    found: list[DuePlan] = []
    for plan in plans:
        review = rules.review_now(plan.review_cadence, as_utc(plan.last_reviewed_at) if plan.last_reviewed_at
                                  else None, asked.get(plan.id or 0, []), now=as_utc(now), lead=lead, tz=tz)
        if review is not None:
            open_request = review.open_request
            found.append(DuePlan(plan_id=plan.id or 0, code=plan.code, occasion=review.occasion,
                                 review_due=review.review_due, asked_before=review.asked_before,
                                 open_step_id=open_request.step_id if open_request else None,
                                 waiting=open_request is not None and open_request.pending))
    return found


@task
def plans_due(code: str | None, lead_days: int) -> list[DuePlan]:
    """The plan asked for (when due), or every active plan due for review within the lead time."""
    with unit() as db:
        query = select(ContinuityPlan).where(col(ContinuityPlan.active).is_(True))
        if code:
            if db.exec(select(ContinuityPlan.id).where(ContinuityPlan.code == code)).first() is None:
                raise ValueError(f"continuity plan {code!r} does not exist")
            query = query.where(ContinuityPlan.code == code)
        plans = list(db.exec(query.order_by(col(ContinuityPlan.id))))
        return due_plans(db, plans, timedelta(days=lead_days), utcnow())


def _plan_context(db: Session, plan: ContinuityPlan, review_due: datetime, asked_before: bool) -> dict[str, Any]:
    owner = get_person(db, plan.owner_id or 0)
    return {"plan": {"code": plan.code, "name": plan.name, "rto_minutes": plan.rto_minutes,
                     "rpo_minutes": plan.rpo_minutes, "version": plan.version, "summary": plan.summary,
                     "last_reviewed_at": plan.last_reviewed_at, "last_tested_at": plan.last_tested_at},
            "owner": {"name": owner.name}, "review_due": review_due,
            "overdue": review_due <= utcnow(), "asked_before": asked_before}


def _day(moment: datetime | None) -> str:
    if moment is None:
        return "never"
    return f"{as_utc(moment).astimezone(ZoneInfo(get_settings().timezone)):%Y-%m-%d}"


@task
def ask_owner(target: DuePlan, answer_days: int) -> int:
    """The review request for this occasion, asked of the owner once however often the run restarts."""
    with unit() as db:
        plan = _plan(db, target.plan_id)
        due, final = answer_window(answer_days)
        key = _step_key(target.plan_id, target.occasion)
        _round(db, plan, key, target.occasion.isoformat(), target.review_due)
        step = request(
            db, key=key, person_id=plan.owner_id or 0, form=FORM,
            title=f"Review continuity plan {plan.code}: {plan.name}", subject_type=SUBJECT,
            subject_id=target.plan_id, due_at=due, expires_at=final, flow_run_id=runs.current_run_id(), actor=ACTOR,
            template=REQUEST, context=_plan_context(db, plan, target.review_due, target.asked_before),
            details={"plan": f"{plan.name} ({plan.code})", "RTO (minutes)": plan.rto_minutes,
                     "RPO (minutes)": plan.rpo_minutes, "version": plan.version,
                     "last reviewed": _day(plan.last_reviewed_at), "last tested": _day(plan.last_tested_at),
                     "summary": plan.summary, "review due": _day(target.review_due),
                     _OCCASION: target.occasion.isoformat(), _REVIEW_DUE: target.review_due.isoformat()})
        return step.id or 0


def _round(db: Session, plan: ContinuityPlan, key: str, occasion: str, review_due: datetime) -> Occasion:
    """The round of the request `key`: opened as the request is asked (or, for a request asked before rounds
    were kept, when it is settled)."""
    round_, _ = occasions.open_occasion(
        db, process=PROCESS.name, key=key, title=f"Review of {plan.code} ({occasion})", period_start=review_due,
        period_end=None, flow_run_id=runs.current_run_id(), status=OccasionStatus.collecting, phase=ASKED)
    return round_


def _answered(db: Session, plan: ContinuityPlan, step: HumanStep, answer: PlanReview, occasion: str) -> str:
    """Apply a confirmation or revision once: conditional on no review recorded since the request was asked."""
    current = rules.Targets(rto_minutes=plan.rto_minutes, rpo_minutes=plan.rpo_minutes, summary=plan.summary,
                            version=plan.version)
    new = rules.revised(current, rto_minutes=answer.rto_minutes, rpo_minutes=answer.rpo_minutes,
                        summary=answer.summary)
    values: dict[str, Any] = {"last_reviewed_at": utcnow()}
    if answer.decision == "revise":
        values |= {"rto_minutes": new.rto_minutes, "rpo_minutes": new.rpo_minutes, "summary": new.summary,
                   "version": col(ContinuityPlan.version) + 1}
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
    changes = {name: {"old": getattr(current, name), "new": getattr(new, name)}
               for name in ("rto_minutes", "rpo_minutes", "summary", "version")}
    trail.record(db, actor=answerer.email, action=REVISED, entity_type=SUBJECT, entity_id=plan.id or 0,
                 data={**data, "changes": changes})
    return "revised"


def _missed(db: Session, plan: ContinuityPlan, step: HumanStep, round_: Occasion, occasion: str) -> None:
    """Record the lapse once (its round moves from asked to missed): tell the owner's manager of an expired
    request, and raise a finding with a corrective action for the owner. The plan stays due."""
    if not occasions.claim_phase(db, round_.id or 0, ASKED, LAPSED):
        return
    owner = get_person(db, plan.owner_id or 0)
    asked = get_person(db, step.person_id)
    manager = db.get(Person, owner.manager_id) if owner.manager_id else None
    told = manager if manager is not None and manager.active and step.status == StepStatus.expired else None
    trail.record(db, actor=ACTOR, action=MISSED, entity_type=SUBJECT, entity_id=plan.id or 0,
                 data={"step_id": step.id, "occasion": occasion, "outcome": step.status.value,
                       "asked": asked.email, "owner": owner.email, "manager_told": told.email if told else None})
    context = _plan_context(db, plan, datetime.fromisoformat(str(step.details[_REVIEW_DUE])), False)
    if told is not None:
        notify.enqueue(db, key=f"{step.key}-missed", recipient_id=told.id or 0, template=MISSED_NOTICE,
                       context={**context, "recipient": notify.recipient(told), "asked": {"name": asked.name},
                                "expired_at": step.expires_at})
    _raise_lapse(db, plan, owner, told, step, round_, context)


def _raise_lapse(db: Session, plan: ContinuityPlan, owner: Person, told: Person | None, step: HumanStep,
                 round_: Occasion, context: dict[str, Any]) -> None:
    """The lapse as a finding, with a corrective action for the plan's owner (verified by the manager told)."""
    tz = get_settings().timezone
    since = as_utc(plan.last_reviewed_at) if plan.last_reviewed_at else None
    raised = raise_finding(
        db, origin=Origin(SUBJECT, plan.id or 0), code=rules.lapse_code(since, tz), severity=LAPSE_SEVERITY,
        actor=ACTOR, process=PROCESS.name, occasion_id=round_.id, verifier_id=told.id if told else None,
        description=f"The review of continuity plan {plan.code} ({plan.name}) lapsed: nobody "
                    f"confirmed or revised it by {_day(step.expires_at)}.",
        action=ActionSpec(owner_id=owner.id or 0, due_at=working_days_from_now(working_days_for(LAPSE_SEVERITY)),
                          description=f"Review continuity plan {plan.code} ({plan.name}) with the people it "
                                      f"depends on, and confirm or revise it."))
    if raised.created and raised.action is not None and raised.step is not None:
        notify.enqueue(db, key=f"{step.key}-action", recipient_id=owner.id or 0, template=ACTION_NOTICE,
                       context={**context, "recipient": notify.recipient(owner), "step_id": raised.step.id,
                                "action": {"description": raised.action.description,
                                           "due_at": raised.action.due_at}})


@task
def settle(plan_id: int, step_id: int) -> PlanResult:
    """What the owner's answer (or silence) means for the plan, applied once however often this runs."""
    with unit() as db:
        plan = _plan(db, plan_id)
        step = db.get(HumanStep, step_id)
        assert step is not None
        occasion = str(step.details.get(_OCCASION, ""))
        round_ = _round(db, plan, step.key, occasion, datetime.fromisoformat(str(step.details[_REVIEW_DUE])))
        if step.status == StepStatus.pending:
            outcome = "waiting"
        elif (answer := answer_of(step, PlanReview)) is not None:
            outcome = _answered(db, plan, step, answer, occasion)
            if occasions.claim_phase(db, round_.id or 0, ASKED, outcome.replace("already ", "")):
                occasions.close(db, round_, actor=ACTOR)
        else:
            _missed(db, plan, step, round_, occasion)
            outcome = "missed"
            occasions.close(db, round_, actor=ACTOR)
        db.refresh(plan)
        return PlanResult(plan=plan.code, occasion=occasion, outcome=outcome, version=plan.version)


@task
def preview_requests(due: list[DuePlan], answer_days: int) -> str:
    """The review requests a run would send now, rendered by the real path as an artifact; nothing is kept."""
    fresh = [target for target in due if target.open_step_id is None]
    with preview("Preview of continuity plan review requests"):
        for target in fresh:
            ask_owner.fn(target, answer_days)
    return (f"{len(fresh)} review request(s) rendered as an artifact; nothing sent"
            + (f" ({len(due) - len(fresh)} already asked)" if len(fresh) < len(due) else ""))
