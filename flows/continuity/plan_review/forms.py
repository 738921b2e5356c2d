"""The plan review's form: the owner confirms the plan as it stands, or revises it."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from engine.forms import register_form

FORM = "plan_review"


@register_form(FORM)
class PlanReview(BaseModel):
    """The owner's answer: the plan stands as it is (confirm), or it changed (revise)."""

    model_config = ConfigDict(title="Continuity plan review")

    rto_minutes: int | None = Field(
        None, title="New RTO (minutes)",
        description="Revise only: the recovery-time objective. Empty keeps the current one.")
    rpo_minutes: int | None = Field(
        None, title="New RPO (minutes)",
        description="Revise only: the recovery-point objective. Empty keeps the current one.")
    summary: str = Field(
        "", title="New summary", description="Revise only. Empty keeps the current summary.", max_length=4000,
        json_schema_extra={"widget": "textarea"})
    note: str = Field(
        "", title="What changed", description="Required when you revise: kept in the plan's history.",
        max_length=4000, json_schema_extra={"widget": "textarea"})
    decision: Literal["confirm", "revise"] = Field(
        title="Decision",
        json_schema_extra={"widget": "buttons", "labels": {"confirm": "Confirm: the plan stands",
                                                           "revise": "Revise the plan"}})

    @field_validator("rto_minutes", "rpo_minutes")
    @classmethod
    def _positive(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value is not None and value <= 0:
            name = (info.field_name or "").split("_")[0].upper()
            raise ValueError(f"The {name} must be a positive number of minutes.")
        return value

    @model_validator(mode="after")
    def _decision_fits_the_answer(self) -> PlanReview:
        if self.decision == "revise" and not self.note.strip():
            raise ValueError("A revision needs a note of what changed.")
        # New values with "confirm" are ambiguous: refuse rather than silently drop what the owner typed.
        if self.decision == "confirm" and (self.rto_minutes is not None or self.rpo_minutes is not None
                                           or self.summary.strip()):
            raise ValueError("Confirm keeps the plan as it stands: to change its targets or summary, choose Revise.")
        return self
