"""Human steps: ask a person, record their answer once, expire what nobody answered."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel
from sqlalchemy import Update, update
from sqlmodel import Session, col, select

from engine.forms import form_model
from engine.once import insert_once
from registry import HumanStep, Person, StepStatus, trail
from registry.clock import as_utc, utcnow

ATTACHMENT = "_attachment"  # a step detail: a document under the data directory to read before answering


class StepOutcome(BaseModel):
    """What a waiting flow run is resumed with. The registry row stays the source of truth."""

    step_id: int
    outcome: Literal["answered", "expired", "cancelled"]
    answer: dict[str, Any] | None = None


class StepRefused(ValueError):
    pass


def _answerer(session: Session, person_id: int) -> Person:
    """The person who will actually be asked: an inactive person's delegate stands in for them."""
    person = session.get(Person, person_id)
    if person is None:
        raise StepRefused(f"person {person_id} does not exist")
    if not person.active and person.delegate_id is not None:
        delegate = session.get(Person, person.delegate_id)
        if delegate is not None and delegate.active:
            return delegate
    if not person.active:
        raise StepRefused(f"{person.name} is inactive and has no active delegate")
    return person


def ask(
    session: Session,
    *,
    key: str,
    person_id: int,
    form: str,
    title: str,
    subject_type: str,
    subject_id: int,
    due_at: datetime,
    expires_at: datetime | None = None,
    kind: Literal["approval", "form"] = "form",
    requested_by_id: int | None = None,
    flow_run_id: str | None = None,
    details: dict[str, Any] | None = None,
    actor: str = "system",
) -> HumanStep:
    """Create the step named `key`, or return it unchanged if it already exists (re-runs ask once, and of two
    runs asking at the same moment one creates it and the other gets that step)."""

    def existing() -> HumanStep | None:
        return session.exec(select(HumanStep).where(HumanStep.key == key)).first()

    if (existing_step := existing()) is not None:
        return existing_step
    form_model(form)
    person = _answerer(session, person_id)
    if kind == "approval" and requested_by_id is not None and requested_by_id == person.id:
        raise StepRefused(f"{person.name} cannot approve their own request ({title})")
    due = as_utc(due_at)
    step = HumanStep(
        key=key, kind=kind, form=form, title=title, subject_type=subject_type, subject_id=subject_id,
        details=details or {}, person_id=person.id or 0, requested_by_id=requested_by_id,
        flow_run_id=flow_run_id, due_at=due, expires_at=as_utc(expires_at) if expires_at else due,
    )
    step, created = insert_once(session, step, existing)
    if not created:
        return step
    trail.record(session, actor=actor, action="step.requested", entity_type="human_step", entity_id=step.id or 0,
                 data={"key": key, "person": person.email, "form": form, "subject": f"{subject_type}:{subject_id}",
                       "due_at": step.due_at.isoformat(), "flow_run_id": flow_run_id})
    return step


def decide_statement(step_id: int) -> Update:
    """The conditional UPDATE that decides a step (answered or expired): it changes the step only while pending,
    found by its primary key, so every POST costs one index lookup whatever the registry holds."""
    return update(HumanStep).where(col(HumanStep.id) == step_id, col(HumanStep.status) == StepStatus.pending)


def record_answer(
    session: Session, *, step: HumanStep, person: Person, answer: dict[str, Any],
    ip: str | None = None, user_agent: str | None = None,
) -> bool:
    """Record `answer` if the step is still pending; False if another answer got there first.

    One conditional UPDATE decides the race, so two concurrent posts can never both win.
    """
    now = utcnow()
    result = session.execute(
        decide_statement(step.id or 0)
        .values(status=StepStatus.answered, answer=answer, answered_by_id=person.id, answered_at=now,
                answer_ip=ip, answer_user_agent=(user_agent or "")[:400],
                resume_pending=step.flow_run_id is not None)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return False
    trail.record(session, actor=person.email, action="step.answered", entity_type="human_step",
                 entity_id=step.id or 0, data={"answer": answer, "ip": ip, "on_behalf_of": step.person_id
                                               if step.person_id != person.id else None})
    session.refresh(step)
    return True


def expire(session: Session, *, step: HumanStep, actor: str = "sweep") -> bool:
    result = session.execute(
        decide_statement(step.id or 0)
        .values(status=StepStatus.expired, resume_pending=step.flow_run_id is not None)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return False
    trail.record(session, actor=actor, action="step.expired", entity_type="human_step", entity_id=step.id or 0,
                 data={"due_at": step.due_at.isoformat(), "escalation_level": step.escalation_level})
    session.refresh(step)
    return True


def outcome_of(step: HumanStep) -> StepOutcome | None:
    """The outcome of a decided step, or None while it is pending."""
    if step.status == StepStatus.pending:
        return None
    return StepOutcome(step_id=step.id or 0, outcome=step.status.value, answer=step.answer)  # type: ignore[arg-type]


def seconds_until(moment: datetime, *, margin: timedelta = timedelta(hours=1)) -> int:
    return max(60, int((as_utc(moment) + margin - utcnow()).total_seconds()))
