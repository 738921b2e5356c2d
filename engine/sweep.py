"""The deadline sweep: remind before a deadline, escalate after it, expire at the end, resume what waits."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Update, update
from sqlmodel import Session, col, select
from sqlmodel.sql.expression import SelectOfScalar

from engine import appliers, findings, notify, runs, takeover
from engine.human_steps import expire
from engine.settings import get_settings
from registry import HumanStep, Person, StepStatus, session, trail
from registry.clock import utcnow
from registry.people import get_person

log = logging.getLogger(__name__)


@dataclass
class SweepReport:
    reminded: list[int] = field(default_factory=list)
    escalated: list[int] = field(default_factory=list)
    expired: list[int] = field(default_factory=list)
    resumed: list[int] = field(default_factory=list)
    queued: list[int] = field(default_factory=list)  # the messages escalation queued, for whoever delivers them
    taken_over: list[str] = field(default_factory=list)  # dead flow runs a new run now carries on
    applied: list[int] = field(default_factory=list)  # answered steps whose answer the gateway had not applied
    actions_asked: list[int] = field(default_factory=list)  # steps asked for open actions nobody was asked about
    delivered: int = 0


# Each sweep query is built here, once, so tests/registry/test_query_plans.py reads the plan of the very
# statement the sweep runs. Every one is served by an index of registry/steps.py and reads only the rows it acts
# on: a sweep costs the same with a year of answered steps behind it as on an empty registry.

def reminders_statement(now: datetime, reminder: timedelta) -> SelectOfScalar[HumanStep]:
    """Pending steps not yet reminded whose reminder window (`reminder` before the due date) is open at `now`."""
    return select(HumanStep).where(col(HumanStep.status) == StepStatus.pending, col(HumanStep.reminded_at).is_(None),
                                   col(HumanStep.due_at) > now, col(HumanStep.due_at) <= now + reminder)


def escalation_claim(now: datetime, step_ids: list[int] | None = None) -> Update:
    """Claim every pending, not yet escalated step past its due date and not expired (or just `step_ids`)."""
    claim = update(HumanStep).where(col(HumanStep.status) == StepStatus.pending,
                                    col(HumanStep.escalation_level) == 0, col(HumanStep.due_at) <= now,
                                    col(HumanStep.expires_at) > now)
    if step_ids is not None:
        claim = claim.where(col(HumanStep.id).in_(step_ids))
    return claim.values(escalation_level=1).returning(col(HumanStep.id))


def expiry_statement(now: datetime) -> SelectOfScalar[HumanStep]:
    return select(HumanStep).where(col(HumanStep.status) == StepStatus.pending, col(HumanStep.expires_at) <= now)


def resume_statement() -> SelectOfScalar[Any]:
    """Steps decided whose waiting run has not been handed the outcome; `== True`, which both planners match
    to the partial index (PostgreSQL cannot use an index for `IS true`)."""
    return select(HumanStep.id).where(col(HumanStep.resume_pending) == True)  # noqa: E712


def _step_context(step: HumanStep, person: Person) -> dict[str, object]:
    """What a notice to the person asked says about their step."""
    return {"step": _step_summary(step, person), "recipient": notify.recipient(person)}


def _step_summary(step: HumanStep, person: Person) -> dict[str, object]:
    return {"id": step.id, "title": step.title, "due_at": step.due_at, "expires_at": step.expires_at,
            "asked": person.name,
            "where": str(step.details.get("area", "")) if isinstance(step.details, dict) else ""}


def remind_due(now: datetime, report: SweepReport) -> None:
    reminder = timedelta(hours=get_settings().reminder_hours)
    with session() as db:
        for step in db.exec(reminders_statement(now, reminder)).all():
            assert step.id is not None
            # Someone asked inside the reminder window has just been told: a reminder would be noise.
            if step.created_at < step.due_at - reminder:
                notify.enqueue(db, key=f"step-{step.id}-reminder", recipient_id=step.person_id,
                               template="step_reminder", context=_step_context(step, get_person(db, step.person_id)))
                step.reminded_at = now
                db.add(step)
                report.reminded.append(step.id)


def _escalation_recipients(db: Session, step: HumanStep, person: Person) -> list[Person]:
    """The person's manager and whoever the step names (a drill's wardens): active, and never the person."""
    wanted = ([person.manager_id] if person.manager_id else []) + list(step.escalate_to or [])
    found: dict[int, Person] = {}
    for person_id in wanted:
        candidate = db.get(Person, person_id)
        if candidate is not None and candidate.active and candidate.id != person.id:
            found.setdefault(candidate.id or 0, candidate)
    return list(found.values())


def escalate_overdue(now: datetime, report: SweepReport, *, step_ids: list[int] | None = None) -> None:
    """Escalate every step past its due date (or just `step_ids`), once, whoever gets there first.

    Each step is claimed with a conditional UPDATE before anything is queued, so the minute sweep and a flow
    escalating its own steps on time never both do it. Each recipient gets one message listing all their
    escalated steps (a warden hears of forty missing people once, not forty times); each person asked gets an
    overdue notice of their own.
    """
    with session() as db:
        escalate(db, now, report, step_ids=step_ids)


def escalate(db: Session, now: datetime, report: SweepReport, *, step_ids: list[int] | None = None) -> None:
    """escalate_overdue in the caller's transaction: a flow's unit of work delivers what it queued."""
    claimed = db.execute(escalation_claim(now, step_ids).execution_options(synchronize_session=False))
    ids = sorted(row[0] for row in claimed)
    if not ids:
        return
    by_recipient: dict[int, list[dict[str, object]]] = {}
    for step in db.exec(select(HumanStep).where(col(HumanStep.id).in_(ids)).order_by(col(HumanStep.id))):
        assert step.id is not None
        person = get_person(db, step.person_id)
        recipients = _escalation_recipients(db, step, person)
        for recipient in recipients:
            by_recipient.setdefault(recipient.id or 0, []).append(_step_summary(step, person))
        notices = notify.enqueue(db, key=f"step-{step.id}-overdue", recipient_id=person.id or 0,
                                 template="step_overdue",
                                 context={**_step_context(step, person),
                                          "escalated_to": [r.name for r in recipients]})
        report.queued += [row.id for row in notices if row.id is not None]
        trail.record(db, actor="sweep", action="step.escalated", entity_type="human_step", entity_id=step.id,
                     data={"level": 1, "to": [r.email for r in recipients],
                           "why_nobody": None if recipients else "no active manager or escalation contact"})
        report.escalated.append(step.id)
    for recipient_id, steps in by_recipient.items():
        batch = hashlib.sha256(",".join(str(s["id"]) for s in steps).encode()).hexdigest()[:16]
        report.queued += notify.digest(db, key=f"escalation-{batch}", template="step_escalation",
                                       items={recipient_id: steps}, context={}, items_as="steps")


def expire_overdue(now: datetime, report: SweepReport) -> None:
    with session() as db:
        for step in db.exec(expiry_statement(now)).all():
            if expire(db, step=step):
                report.expired.append(step.id or 0)


def resume_waiting(report: SweepReport) -> None:
    """Resume every run whose step was decided but not yet handed back (API down, or not yet suspended)."""
    with session() as db:
        owed = [i for i in db.exec(resume_statement()) if i]
    report.resumed.extend(step_id for step_id in owed if runs.hand_back(step_id))


def take_over_dead(report: SweepReport) -> None:
    """Start a new run for every run whose process died; the Prefect API being down must not stop the sweep."""
    try:
        report.taken_over.extend(t.dead for t in takeover.take_over_dead_runs() if t.new is not None)
    except Exception as error:  # the next minute's sweep tries again
        log.warning("could not look for dead flow runs: %s", error)


def sweep(now: datetime | None = None) -> SweepReport:
    now = now or utcnow()
    report = SweepReport()
    take_over_dead(report)
    sweep_registry(now, report)
    return report


def sweep_registry(now: datetime, report: SweepReport) -> None:
    """The sweep's work on the registry (all but the take-over, which asks the Prefect API)."""
    remind_due(now, report)
    escalate_overdue(now, report)
    expire_overdue(now, report)
    # Applied before the waiting runs resume: a run handed an answer reads what the answer changed.
    report.applied.extend(appliers.apply_unapplied())
    resume_waiting(report)
    report.actions_asked.extend(findings.ask_unasked())
    report.delivered = len(notify.deliver_due().sent)
