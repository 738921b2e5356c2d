"""A gate: ask someone to approve, suspend the run, resume it with their Decision.

    step = gate.ask(db, key=..., approver_id=..., ...)   # in a task, inside a unit of work
    decided = gate.wait(step.id)                          # in the flow body
    if isinstance(decided, gate.HeldElsewhere): return ... (another live run waits for this answer)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlmodel import Session

from engine import runs
from engine.answers import Decision, decision_of
from engine.human_steps import StepOutcome
from engine.work import request
from registry import HumanStep, session


@dataclass(frozen=True)
class HeldElsewhere:
    """Another live run already waits at this gate: the answer resumes that run, so this one has nothing to do."""

    step_id: int
    holder: str

    @property
    def detail(self) -> str:
        return f"already awaited by flow run {self.holder}"


def ask(
    db: Session,
    *,
    key: str,
    approver_id: int,
    title: str,
    subject_type: str,
    subject_id: int,
    due_at: datetime,
    template: str,
    context: dict[str, Any],
    actor: str,
    expires_at: datetime | None = None,
    requested_by_id: int | None = None,
    details: dict[str, Any] | None = None,
) -> HumanStep:
    """The approval step (keyed: asked once), its message queued, the current run the one that waits for it.

    The requester cannot approve their own request (StepRefused)."""
    return request(db, key=key, person_id=approver_id, form="approval", kind="approval", title=title,
                   subject_type=subject_type, subject_id=subject_id, due_at=due_at, expires_at=expires_at,
                   template=template, context=context, actor=actor, requested_by_id=requested_by_id,
                   flow_run_id=runs.current_run_id(), details=details)


def wait(step_id: int) -> Decision | HeldElsewhere:
    """In the flow body: the gate's Decision, suspending the run until it is decided (or it expires)."""
    try:
        runs.wait_for_step(step_id)
    except runs.StepHeldElsewhere as held:
        return HeldElsewhere(step_id=step_id, holder=held.holder)
    with session() as db:
        step = db.get(HumanStep, step_id)
        assert step is not None
        decided = decision_of(db, step)
    assert decided is not None, "wait_for_step returns only once the step is decided"
    return decided


def wait_for_answer(step_id: int) -> StepOutcome | HeldElsewhere:
    """In the flow body: wait as `wait` does for a step that is a form, not an approval (read its answer with
    engine.answers.answer_of once it is settled)."""
    try:
        return runs.wait_for_step(step_id)
    except runs.StepHeldElsewhere as held:
        return HeldElsewhere(step_id=step_id, holder=held.holder)


def decision(step_id: int) -> Decision | None:
    """A gate's Decision read from the registry (None while pending), for a phase that runs after the wait."""
    with session() as db:
        step = db.get(HumanStep, step_id)
        if step is None:
            raise ValueError(f"step {step_id} does not exist")
        return decision_of(db, step)
