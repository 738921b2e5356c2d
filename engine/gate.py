"""A gate: ask someone to approve (or to answer any form), suspend the run, resume it with their answer.

    step = gate.ask(db, key=..., approver_id=..., ...)   # in a task, inside a unit of work
    decided = gate.wait(step.id)                          # in the flow body
    if isinstance(decided, gate.HeldElsewhere): return ... (another live run waits for this answer)

Many gates in one message (every change of standing of a review, every risk above appetite) are a Digest:

    asks = gate.Digest(key=f"review-{id}-approvals", template="supply/vendor_review/standing_changes",
                       context={"period": ...}, items_as="changes")
    step_ids = [asks.ask(db, item={...}, key=..., approver_id=..., title=..., ...).id for ... in changes]
    asks.queue(db)                                        # one message per approver, a link per gate
    for step_id in step_ids: decided = gate.wait(step_id) # each answer resumes the run; each wait gets its own

A gate with a form of its own (the Director's accept-or-treat answer) is asked with `form="risk_appetite"` and
waited for with `gate.wait_for(step.id, RiskAppetite)`: the answer as that form, or a Decision when it expired
or was cancelled.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, TypeVar

from pydantic import BaseModel
from sqlmodel import Session

from engine import runs, work
from engine.answers import Decision, answer_of, decision_of
from engine.forms import form_model
from engine.human_steps import StepOutcome
from engine.work import request
from registry import HumanStep, StepStatus, session

F = TypeVar("F", bound=BaseModel)

APPROVAL = "approval"


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
    form: str = APPROVAL,
    escalate_to: Sequence[int] = (),
) -> HumanStep:
    """The gate's step (keyed: asked once), its message queued, the current run the one that waits for it.

    `form` is any registered form; the approval form (the default) makes it an approval, which the requester
    cannot give themselves (StepRefused). Overdue, it is escalated to the approver's manager and `escalate_to`."""
    return request(db, key=key, person_id=approver_id, form=form, kind=_kind(form),
                   title=title, subject_type=subject_type, subject_id=subject_id, due_at=due_at,
                   expires_at=expires_at, template=template, context=context, actor=actor,
                   requested_by_id=requested_by_id, flow_run_id=runs.current_run_id(), details=details,
                   escalate_to=escalate_to)


def _kind(form: str) -> Literal["approval", "form"]:
    """Only the approval form makes an approval: the one step its requester may not answer themselves."""
    return "approval" if form == APPROVAL else "form"


class Digest(work.Digest):
    """Gates asked in one message per approver (never one message per gate), every one held by the current run.

    `ask` takes what `gate.ask` takes, less the template and context (the digest's), plus the `item` its
    message lists (with the step's id added as `step_id`, for its link); `add` lists an item that is not a gate,
    `queue` sends the messages (keyed: a re-run sends none twice). The flow then waits on each gate with
    `gate.wait` / `gate.wait_for`: the answer to any of them resumes the run, and each wait returns its own
    gate's Decision or answer (a run resumed by another gate's answer waits on).
    """

    def ask(  # type: ignore[override]  # a gate's arguments, not engine.human_steps.ask's
        self,
        db: Session,
        *,
        item: dict[str, Any],
        key: str,
        approver_id: int,
        title: str,
        subject_type: str,
        subject_id: int,
        due_at: datetime,
        actor: str,
        expires_at: datetime | None = None,
        requested_by_id: int | None = None,
        details: dict[str, Any] | None = None,
        form: str = APPROVAL,
        escalate_to: Sequence[int] = (),
    ) -> HumanStep:
        """The gate's step (keyed: asked once), the current run the one it resumes, `item` listed in the
        approver's message."""
        return super().ask(db, item=item, key=key, person_id=approver_id, form=form,
                           kind=_kind(form), title=title, subject_type=subject_type,
                           subject_id=subject_id, due_at=due_at, expires_at=expires_at,
                           requested_by_id=requested_by_id, flow_run_id=runs.current_run_id(), details=details,
                           actor=actor, escalate_to=escalate_to)


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


def wait_for(step_id: int, form: type[F]) -> F | Decision | HeldElsewhere:
    """In the flow body: a form gate's answer as `form`, suspending the run until it is answered; a Decision
    (expired, cancelled) when nobody answered it."""
    try:
        runs.wait_for_step(step_id)
    except runs.StepHeldElsewhere as held:
        return HeldElsewhere(step_id=step_id, holder=held.holder)
    settled = answer(step_id, form)
    assert settled is not None, "wait_for_step returns only once the step is decided"
    return settled


def answer(step_id: int, form: type[F]) -> F | Decision | None:
    """A form gate's answer read from the registry (None while pending; a Decision when it expired or was
    cancelled), for a phase that runs after the wait."""
    with session() as db:
        step = db.get(HumanStep, step_id)
        if step is None:
            raise ValueError(f"step {step_id} does not exist")
        if form_model(step.form) is not form:
            raise TypeError(f"step {step_id} asks the {step.form!r} form ({form_model(step.form).__name__}), "
                            f"not a {form.__name__}")
        if step.status == StepStatus.answered:
            return answer_of(step, form)
        return decision_of(db, step)


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
