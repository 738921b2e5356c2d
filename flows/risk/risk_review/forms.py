"""The forms of the risk review: an owner confirms or re-scores a risk; the Director accepts or treats a risk
above its category's appetite.

Checks that depend on the risk's matrix, on today or on the registry run only as a person submits the form
(engine.forms.answering: the step's details, a session, the moment); an answer read back later is taken as it was
accepted then.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from engine.forms import AnswerContext, answering, register_form
from flows.risk.risk_review import rules

RESCORE, APPETITE = "risk_rescore", "risk_appetite"
SCALE = "_scale"  # hidden detail: the matrix's axes' labels and the current scores, {likelihoods, impacts, current}
LONGEST_ACCEPTANCE = "_longest_acceptance_days"  # hidden detail: how far ahead an acceptance may run
LONGEST_ACCEPTANCE_DAYS = 366
SCORES = ("inherent_likelihood", "inherent_impact", "residual_likelihood", "residual_impact")


def _score(title: str, description: str) -> Any:
    return Field(None, title=title, description=description, json_schema_extra={"widget": "number"})


@register_form(RESCORE)
class Rescore(BaseModel):
    """The owner's answer: the risk's scores stand (confirm), or they change (re-score, with a rationale)."""

    model_config = ConfigDict(title="Risk re-score")

    inherent_likelihood: int | None = _score(
        "New inherent likelihood", "Re-score only: before controls. Empty keeps the current one.")
    inherent_impact: int | None = _score(
        "New inherent impact", "Re-score only: before controls. Empty keeps the current one.")
    residual_likelihood: int | None = _score(
        "New residual likelihood", "Re-score only: with the controls as they work today. Empty keeps the current one.")
    residual_impact: int | None = _score(
        "New residual impact", "Re-score only: with the controls as they work today. Empty keeps the current one.")
    rationale: str = Field(
        "", title="Rationale", description="Required for any change: why the score moved (kept in the risk's history).",
        max_length=4000, json_schema_extra={"widget": "textarea"})
    decision: Literal["confirm", "rescore"] = Field(
        title="Decision", json_schema_extra={"widget": "buttons", "labels": {
            "confirm": "Confirm: the scores stand", "rescore": "Re-score the risk"}})

    def scores(self, current: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
        """The scores this answer leaves the risk with: the new ones given, the current ones kept."""
        given = (self.inherent_likelihood, self.inherent_impact, self.residual_likelihood, self.residual_impact)
        kept = tuple(new if new is not None and self.decision == "rescore" else old
                     for new, old in zip(given, current, strict=True))
        return kept  # type: ignore[return-value]

    @model_validator(mode="after")
    def _decision_fits_the_answer(self, info: ValidationInfo) -> Rescore:
        given = [getattr(self, name) for name in SCORES]
        if self.decision == "confirm":
            if any(value is not None for value in given):
                raise ValueError("Confirm keeps the scores as they are: to change one, choose Re-score.")
            return self
        if all(value is None for value in given):
            raise ValueError("A re-score needs at least one new likelihood or impact (or choose Confirm).")
        if not self.rationale.strip():
            raise ValueError("A re-score needs a rationale: say why the score moved.")
        answered = answering(info)
        scale = answered.details.get(SCALE) if answered is not None else None
        if isinstance(scale, dict):
            _check_scale(self, scale)
        return self


_PROBLEMS = {"off_scale": "{field}: {value} is not on the matrix's scale (1 to {top}).",
             "residual_above_inherent": "{field}: the residual score cannot be worse than the inherent one (the "
                                        "controls do not make a risk likelier or its impact larger).",
             "rationale_required": "A re-score needs a rationale: say why the score moved."}


def _check_scale(answer: Rescore, scale: dict[str, Any]) -> None:
    """The answer on the risk's matrix (rules.rescore_problems), the first problem named with its field."""
    current = rules.Scores(*(int(v) for v in scale["current"]))
    new = rules.Scores(*answer.scores(current.as_tuple()))
    if new == current:
        raise ValueError("These are the current scores: choose Confirm, or give a score that changes.")
    matrix = rules.Matrix(code="", likelihoods=tuple(scale["likelihoods"]), impacts=tuple(scale["impacts"]),
                          cells=(), levels=())
    for field, problem in rules.rescore_problems(current, new, answer.rationale, matrix):
        top = len(matrix.likelihoods) if field.endswith("likelihood") else len(matrix.impacts)
        raise ValueError(_PROBLEMS[problem].format(field=field.replace("_", " ").capitalize(),
                                                   value=getattr(new, field), top=top))


@register_form(APPETITE)
class AppetiteDecision(BaseModel):
    """The Director's answer on a risk above its category's appetite: accept it until a date, or treat it."""

    model_config = ConfigDict(title="Risk above appetite")

    accepted_until: date | None = Field(
        None, title="Accept until", description="Accept only: the day the acceptance ends (YYYY-MM-DD, within a "
                                                "year); the risk is reviewed again then.")
    justification: str = Field(
        "", title="Justification", description="Accept only: why the organisation can carry this risk until then.",
        max_length=4000, json_schema_extra={"widget": "textarea"})
    action: str = Field(
        "", title="Treatment action", description="Treat only: what will be done to bring the risk within appetite.",
        max_length=4000, json_schema_extra={"widget": "textarea"})
    action_owner: str = Field(
        "", title="Action owner (e-mail)", description="Treat only: the person who carries the action out.",
        max_length=320)
    decision: Literal["accept", "treat"] = Field(
        title="Decision", json_schema_extra={"widget": "buttons", "labels": {
            "accept": "Accept until the date", "treat": "Treat: assign the action"}})

    @field_validator("action_owner")
    @classmethod
    def _an_address(cls, value: str) -> str:
        value = value.strip().lower()
        if value and ("@" not in value or value.startswith("@") or value.endswith("@")):
            raise ValueError("Give the action owner's e-mail address.")
        return value

    @model_validator(mode="after")
    def _decision_fits_the_answer(self, info: ValidationInfo) -> AppetiteDecision:
        if self.decision == "accept":
            if self.accepted_until is None:
                raise ValueError("An acceptance needs the day it ends (Accept until).")
            if not self.justification.strip():
                raise ValueError("An acceptance needs a justification.")
            if self.action.strip() or self.action_owner:
                raise ValueError("Accept carries no treatment action: clear it, or choose Treat.")
            if (given := answering(info)) is not None:
                _check_until(self.accepted_until, given)
            return self
        if not self.action.strip():
            raise ValueError("A treatment needs the action to take.")
        if not self.action_owner:
            raise ValueError("A treatment needs the action's owner: give their e-mail address.")
        if self.accepted_until is not None:
            raise ValueError("Treat carries no acceptance date: clear it, or choose Accept.")
        given = answering(info)
        if given is not None and owner_id(given.db, self.action_owner) is None:
            raise ValueError(f"Action owner: nobody in the registry has the address {self.action_owner}.")
        return self


def _check_until(until: date, given: AnswerContext) -> None:
    longest = int(given.details.get(LONGEST_ACCEPTANCE) or LONGEST_ACCEPTANCE_DAYS)
    now = given.today
    if until <= now:
        raise ValueError(f"Accept until: {until.isoformat()} is not in the future.")
    if until > now + timedelta(days=longest):
        latest = now + timedelta(days=longest)
        raise ValueError(f"Accept until: at most {longest} days ahead (by {latest.isoformat()}); accept again at "
                         "the next review if it still holds.")


def owner_id(db: Any, email: str) -> int | None:
    """The active person with this address, the one a treatment action is assigned to."""
    from sqlmodel import col, func, select

    from registry import Person

    return db.exec(select(Person.id).where(func.lower(col(Person.email)) == email.strip().lower(),
                                           col(Person.active).is_(True))).first()


FORMS = (Rescore, AppetiteDecision)
