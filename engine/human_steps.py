"""Human steps: ask a person, record their answer once, expire what nobody answered, withdraw what no longer stands."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel
from sqlalchemy import Update, update
from sqlmodel import Session, col, select

from engine.forms import form_model
from engine.once import LostRaceWithoutWinner, insert_ignoring_conflicts
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
    escalate_to: Sequence[int] = (),
) -> HumanStep:
    """Create the step named `key`, or return it unchanged if it already exists (re-runs ask once, and of two
    runs asking at the same moment one creates it and the other gets that step). One step of `ask_many`.

    An overdue step is escalated to the person's manager and to everyone in `escalate_to` (a cost centre's
    manager who is not the owner's)."""
    return ask_many(session, [Ask(key=key, person_id=person_id, form=form, title=title, subject_type=subject_type,
                                  subject_id=subject_id, due_at=due_at, expires_at=expires_at, kind=kind,
                                  requested_by_id=requested_by_id, flow_run_id=flow_run_id, details=details or {},
                                  actor=actor, escalate_to=tuple(escalate_to))])[0]


@dataclass(frozen=True)
class Ask:
    """One step for `ask_many`: the arguments of `ask`, and whom an overdue step is escalated to besides."""

    key: str
    person_id: int
    form: str
    title: str
    subject_type: str
    subject_id: int
    due_at: datetime
    expires_at: datetime | None = None
    kind: Literal["approval", "form"] = "form"
    requested_by_id: int | None = None
    flow_run_id: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    actor: str = "system"
    escalate_to: tuple[int, ...] = ()


_MANY = 500  # keys per SELECT and rows per INSERT: far within both databases' limits on bound parameters


def ask_many(session: Session, asks: Sequence[Ask]) -> list[HumanStep]:
    """`ask` for many people at once, in a few statements instead of several round trips per person: one SELECT
    of the keys already asked, one of the people (and their delegates), one INSERT … ON CONFLICT DO NOTHING
    RETURNING of the new steps, one trail append. The steps in the order of `asks`.

    Everything `ask` promises holds: a key asked before returns its step unchanged (nothing re-checked, nothing
    recorded), an inactive person's active delegate is asked instead, an approver is never asked to approve their
    own request (StepRefused before anything is written), and of two callers asking the same keys at once, one
    creates each step and the other gets it (rows go in key order, so two such inserts wait for each other
    instead of deadlocking).
    """
    if len({a.key for a in asks}) != len(asks):
        raise ValueError("ask_many: the same key twice")
    found = _steps_by_key(session, [a.key for a in asks])
    new = [a for a in asks if a.key not in found]
    if new:
        for form in {a.form for a in new}:
            form_model(form)
        answerers = _answerers(session, {a.person_id for a in new})
        rows: list[dict[str, Any]] = []
        for a in sorted(new, key=lambda a: a.key):
            person = answerers[a.person_id]
            if a.kind == "approval" and a.requested_by_id is not None and a.requested_by_id == person.id:
                raise StepRefused(f"{person.name} cannot approve their own request ({a.title})")
            due = as_utc(a.due_at)
            rows.append({"key": a.key, "kind": a.kind, "form": a.form, "title": a.title,
                         "subject_type": a.subject_type, "subject_id": a.subject_id, "details": a.details or {},
                         "person_id": person.id or 0, "requested_by_id": a.requested_by_id,
                         "flow_run_id": a.flow_run_id, "created_at": utcnow(), "due_at": due,
                         "expires_at": as_utc(a.expires_at) if a.expires_at else due, "status": StepStatus.pending,
                         "escalation_level": 0, "escalate_to": list(a.escalate_to), "resume_pending": False})
        session.flush()
        created: dict[str, HumanStep] = {}
        # One statement given every row (executemany, batched by SQLAlchemy into multi-row INSERTs), compiled once
        # and cached: a statement with the rows in its VALUES is compiled afresh each time, which cost more than
        # the inserts.
        statement = insert_ignoring_conflicts(session, HumanStep).returning(HumanStep)
        created.update((step.key, step) for step in session.scalars(statement, rows))
        found.update(created)
        lost = [a.key for a in new if a.key not in created]  # another caller asked these first: theirs stand
        if lost:
            found.update(_steps_by_key(session, lost))
            if missing := [key for key in lost if key not in found]:
                raise LostRaceWithoutWinner(f"human_step: {missing[:3]} neither inserted nor found")
        people = {a.key: answerers[a.person_id] for a in new}
        trail.record_many(session, [
            trail.Entry(actor=a.actor, action="step.requested", entity_type="human_step",
                        entity_id=created[a.key].id or 0,
                        data={"key": a.key, "person": people[a.key].email, "form": a.form,
                              "subject": f"{a.subject_type}:{a.subject_id}",
                              "due_at": created[a.key].due_at.isoformat(), "flow_run_id": a.flow_run_id})
            for a in new if a.key in created])
    return [found[a.key] for a in asks]


def _steps_by_key(session: Session, keys: Sequence[str]) -> dict[str, HumanStep]:
    found: dict[str, HumanStep] = {}
    for start in range(0, len(keys), _MANY):
        found.update((step.key, step) for step in session.exec(
            select(HumanStep).where(col(HumanStep.key).in_(keys[start:start + _MANY]))))
    return found


def _answerers(session: Session, person_ids: set[int]) -> dict[int, Person]:
    """Each id → who will actually be asked: an inactive person's active delegate stands in for them; StepRefused
    for a person who does not exist, or is inactive with no active delegate."""
    ids = sorted(person_ids)
    people: dict[int, Person] = {}
    for start in range(0, len(ids), _MANY):
        people.update((p.id or 0, p) for p in session.exec(
            select(Person).where(col(Person.id).in_(ids[start:start + _MANY]))))
    delegate_ids = sorted({p.delegate_id for p in people.values() if not p.active and p.delegate_id is not None})
    delegates = {p.id or 0: p for p in session.exec(select(Person).where(col(Person.id).in_(delegate_ids)))} \
        if delegate_ids else {}
    chosen: dict[int, Person] = {}
    for person_id in ids:
        person = people.get(person_id)
        if person is None:
            raise StepRefused(f"person {person_id} does not exist")
        if not person.active and person.delegate_id is not None:
            delegate = delegates.get(person.delegate_id)
            if delegate is not None and delegate.active:
                chosen[person_id] = delegate
                continue
        if not person.active:
            raise StepRefused(f"{person.name} is inactive and has no active delegate")
        chosen[person_id] = person
    return chosen


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


def _decide_unanswered(session: Session, step: HumanStep, status: StepStatus, *, actor: str, action: str,
                       data: dict[str, Any]) -> bool:
    """End a pending step without an answer (once), recorded on the trail; a run waiting for it is resumed by
    the next sweep. False if it was decided already."""
    result = session.execute(
        decide_statement(step.id or 0)
        .values(status=status, resume_pending=step.flow_run_id is not None)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return False
    trail.record(session, actor=actor, action=action, entity_type="human_step", entity_id=step.id or 0, data=data)
    session.refresh(step)
    return True


def expire(session: Session, *, step: HumanStep, actor: str = "sweep") -> bool:
    return _decide_unanswered(session, step, StepStatus.expired, actor=actor, action="step.expired",
                              data={"due_at": step.due_at.isoformat(), "escalation_level": step.escalation_level})


def cancel(session: Session, step: HumanStep, *, actor: str, reason: str) -> bool:
    """Withdraw a question that no longer stands (a risk re-scored since the Director was asked about it), once:
    the step cancelled while pending, its link refused as withdrawn from then on, and a run waiting for it resumed
    by the next sweep with a cancelled Decision, as an expired step's is. False if it was decided already."""
    return _decide_unanswered(session, step, StepStatus.cancelled, actor=actor, action="step.cancelled",
                              data={"reason": reason})


def outcome_of(step: HumanStep) -> StepOutcome | None:
    """The outcome of a decided step, or None while it is pending."""
    if step.status == StepStatus.pending:
        return None
    return StepOutcome(step_id=step.id or 0, outcome=step.status.value, answer=step.answer)  # type: ignore[arg-type]


def seconds_until(moment: datetime, *, margin: timedelta = timedelta(hours=1)) -> int:
    return max(60, int((as_utc(moment) + margin - utcnow()).total_seconds()))
