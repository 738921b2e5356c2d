"""What a drill asks from a link: each participant's acknowledgement, and the exercise lead's recovery report."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from engine.forms import register_form


@register_form("drill_ack")
class DrillAck(BaseModel):
    """A participant's answer to the alert: accounted for, or in need of assistance and where."""

    model_config = ConfigDict(title="Drill headcount answer")

    status: Literal["accounted", "needs_assistance"] = Field(
        title="Are you safe?",
        json_schema_extra={"widget": "radio", "labels": {
            "accounted": "I am accounted for", "needs_assistance": "I need assistance"},
            # A warden or manager answering from the escalation accounts for someone else.
            "on_behalf": {"title": "Is {person} safe?", "labels": {
                "accounted": "{person} is accounted for", "needs_assistance": "{person} needs assistance"}}},
    )
    location: str = Field(
        "", title="Where are you?", description="Assembly point, floor or room; needed if you need assistance.",
        max_length=200,
        json_schema_extra={"on_behalf": {"title": "Where is {person}?", "description": (
            "Assembly point, floor or room; needed if {person} needs assistance.")}},
    )

    @model_validator(mode="after")
    def _assistance_needs_location(self) -> DrillAck:
        if self.status == "needs_assistance" and not self.location.strip():
            raise ValueError("Please say where you are, so the wardens can reach you.")
        return self


@register_form("drill_recovery")
class DrillRecovery(BaseModel):
    """The exercise lead's report of a continuity exercise: when the service was back, and what was lost."""

    model_config = ConfigDict(title="Exercise recovery report")

    restored_after_minutes: float | None = Field(
        None, title="Service restored after (minutes)",
        description="From the start of the exercise. Empty if it was not restored within the exercise.")
    data_loss_minutes: float = Field(
        title="Data or work lost (minutes)",
        description="How far back the restored data went: the minutes of work before the outage that were lost.")
    note: str = Field("", title="What happened", max_length=4000, json_schema_extra={"widget": "textarea"})

    @model_validator(mode="after")
    def _not_negative(self) -> DrillRecovery:
        if self.restored_after_minutes is not None and self.restored_after_minutes <= 0:
            raise ValueError("The time to restore must be a positive number of minutes, or empty if it was not.")
        if self.data_loss_minutes < 0:
            raise ValueError("The data lost cannot be negative: give 0 if nothing was lost.")
        return self

