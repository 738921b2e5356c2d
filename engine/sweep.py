"""The deadline sweep: remind before a deadline, escalate after it, expire at the end, resume what waits."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlmodel import Session, col, select

from engine import notify, runs
from engine.human_steps import expire
from engine.settings import get_settings
from registry import HumanStep, Person, StepStatus, session, trail
from registry.clock import utcnow


@dataclass
class SweepReport:
    reminded: list[int] = field(default_factory=list)
    escalated: list[int] = field(default_factory=list)
    expired: list[int] = field(default_factory=list)
    resumed: list[int] = field(default_factory=list)
    delivered: int = 0


def _pending(db: Session) -> list[HumanStep]:
    return list(db.exec(select(HumanStep).where(HumanStep.status == StepStatus.pending)))


def _step_context(db: Session, step: HumanStep, recipient: Person) -> dict[str, object]:
    person = db.get(Person, step.person_id)
    return {"step": {"id": step.id, "title": step.title, "due_at": step.due_at, "expires_at": step.expires_at},
            "recipient": {"name": recipient.name}, "asked": {"name": person.name if person else "?"}}


def remind_and_escalate(now: datetime, report: SweepReport) -> None:
    reminder = timedelta(hours=get_settings().reminder_hours)
    with session() as db:
        for step in _pending(db):
            assert step.id is not None
            person = db.get(Person, step.person_id)
            assert person is not None
            window_opens = step.due_at - reminder
            # Someone asked inside the reminder window has just been told: a reminder would be noise.
            if step.reminded_at is None and step.created_at < window_opens <= now < step.due_at:
                notify.enqueue(db, key=f"step-{step.id}-reminder", recipient_id=person.id or 0,
                               template="step_reminder", context=_step_context(db, step, person))
                step.reminded_at = now
                report.reminded.append(step.id)
            elif step.escalation_level == 0 and step.due_at <= now < step.expires_at:
                step.escalation_level = 1
                manager = db.get(Person, person.manager_id) if person.manager_id else None
                if manager is not None and manager.active:
                    notify.enqueue(db, key=f"step-{step.id}-escalation-1", recipient_id=manager.id or 0,
                                   template="step_escalation", context=_step_context(db, step, manager))
                notify.enqueue(db, key=f"step-{step.id}-overdue", recipient_id=person.id or 0,
                               template="step_overdue", context=_step_context(db, step, person))
                notified = manager is not None and manager.active
                trail.record(db, actor="sweep", action="step.escalated", entity_type="human_step",
                             entity_id=step.id,
                             data={"level": 1, "to": manager.email if notified and manager else None,
                                   "why_nobody": None if notified else "no active manager"})
                report.escalated.append(step.id)
            db.add(step)


def expire_overdue(now: datetime, report: SweepReport) -> None:
    with session() as db:
        overdue = db.exec(select(HumanStep).where(HumanStep.status == StepStatus.pending,
                                                  col(HumanStep.expires_at) <= now))
        for step in overdue:
            if expire(db, step=step):
                report.expired.append(step.id or 0)


def resume_waiting(report: SweepReport) -> None:
    """Resume every run whose step was decided but not yet handed back (API down, or not yet suspended)."""
    with session() as db:
        owed = [i for i in db.exec(select(HumanStep.id).where(col(HumanStep.resume_pending).is_(True))) if i]
    report.resumed.extend(step_id for step_id in owed if runs.hand_back(step_id))


def sweep(now: datetime | None = None) -> SweepReport:
    now = now or utcnow()
    report = SweepReport()
    remind_and_escalate(now, report)
    expire_overdue(now, report)
    resume_waiting(report)
    report.delivered = len(notify.deliver_due().sent)
    return report
