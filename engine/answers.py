"""A step's answer read back as what it was validated as: its form model, or for an approval a Decision."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import TypeVar

from pydantic import BaseModel
from sqlmodel import Session

from engine.forms import Approval
from registry import HumanStep, Person, StepStatus

F = TypeVar("F", bound=BaseModel)


class Verdict(StrEnum):
    approved = "approved"
    rejected = "rejected"
    expired = "expired"
    cancelled = "cancelled"


class Decision(BaseModel):
    """How an approval ended, by whom and why. `by` is the e-mail the trail names (the step's actor)."""

    step_id: int
    verdict: Verdict
    by_id: int | None = None
    by: str = ""
    by_name: str = ""
    comment: str = ""
    at: datetime | None = None

    @property
    def approved(self) -> bool:
        return self.verdict == Verdict.approved

    @property
    def answered(self) -> bool:
        return self.verdict in (Verdict.approved, Verdict.rejected)


class AnswerMismatch(ValueError):
    """A stored answer no longer validates as its form: a field renamed without a migration of answers."""


def answer_of(step: HumanStep, form: type[F]) -> F | None:
    """The answer as its form model; None while unanswered (pending, expired, cancelled). Read back with no
    answering context (engine.forms.answering is None): what held as it was given (a date not yet past) is not
    checked again."""
    if step.status != StepStatus.answered or step.answer is None:
        return None
    try:
        return form.model_validate(step.answer)
    except ValueError as error:
        raise AnswerMismatch(f"step {step.id} ({step.form}): its answer is not a valid {form.__name__}: {error}") \
            from error


def decision_of(db: Session, step: HumanStep) -> Decision | None:
    """The Decision of a decided approval step; None while it is pending."""
    if step.status == StepStatus.pending:
        return None
    by = db.get(Person, step.answered_by_id) if step.answered_by_id else None
    common = {"step_id": step.id or 0, "by_id": by.id if by else None, "by": by.email if by else "",
              "by_name": by.name if by else "", "at": step.answered_at}
    if step.status == StepStatus.answered:
        approval = answer_of(step, Approval)
        assert approval is not None
        verdict = Verdict.approved if approval.decision == "approve" else Verdict.rejected
        return Decision(verdict=verdict, comment=approval.comment, **common)
    return Decision(verdict=Verdict(step.status.value), **common)
