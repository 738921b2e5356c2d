"""The form a cost centre's owner answers from the justification request's link: why a line is off budget."""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from engine.forms import answering, register_form
from engine.settings import get_settings

_CANONICAL = re.compile(r"-?\d+(\.\d{1,2})?")  # how an amount is stored, and how most people type one
_NOT_A_FIGURE = re.compile(r"[^\d.,\-−]")  # a currency symbol or code, spaces: not part of the amount


def _amount(value: Any) -> Any:
    """An amount as typed in the organisation's locale (12,500.00; 12.500,00 €; £12500), or as stored."""
    if not isinstance(value, str):
        return value
    from babel.numbers import NumberFormatError, parse_decimal

    text = _NOT_A_FIGURE.sub("", value).replace("−", "-")
    if not text:
        raise ValueError("Give the amount as a number, like 12500.00.")
    if _CANONICAL.fullmatch(text):
        return Decimal(text)
    try:
        return parse_decimal(text, locale=get_settings().locale, strict=True)
    except NumberFormatError:
        raise ValueError(f"{value!r} is not an amount: write it like 12500.00.") from None


@register_form("budget_justification")
class BudgetJustification(BaseModel):
    """Why a budget line is off by more than the materiality threshold, what the year will now cost, and whether
    an action is needed (it becomes a corrective action the owner answers for, with the shared lifecycle)."""

    model_config = ConfigDict(title="Budget variance justification")

    explanation: str = Field(
        title="Explanation", description="What caused the variance this month.", max_length=4000,
        json_schema_extra={"widget": "textarea"},
    )
    nature: Literal["one-off", "recurring"] = Field(
        title="One-off or recurring?", description="Will it happen again in the months to come?",
        json_schema_extra={"widget": "radio", "labels": {"one-off": "One-off: it will not recur",
                                                         "recurring": "Recurring: expect it again"}},
    )
    revised_forecast: Decimal = Field(
        title="Revised forecast to year end",
        description="What you now expect this line to total for the whole year: actuals so far plus what is still "
                    "to come.",
        max_digits=14, decimal_places=2,
    )
    corrective_action_needed: bool = Field(
        False, title="A corrective action is needed",
        description="Tick it if something must be done to bring the line back within budget: it becomes a corrective "
                    "action you own, and you report it done from a link.",
    )
    action_description: str = Field(
        "", title="Corrective action", description="What will be done. Needed when an action is.",
        max_length=2000, validate_default=True, json_schema_extra={"widget": "textarea"},
    )
    action_due: date | None = Field(
        None, title="Action due by", description="The day the action will be done. Needed when an action is.",
        validate_default=True, json_schema_extra={"widget": "date"},
    )

    @field_validator("revised_forecast", mode="before")
    @classmethod
    def _an_amount(cls, value: Any) -> Any:
        return _amount(value)

    @field_validator("revised_forecast")
    @classmethod
    def _to_the_cent(cls, value: Decimal) -> Decimal:
        return value.quantize(Decimal("0.01"))

    @field_validator("action_due", mode="before")
    @classmethod
    def _a_day(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip():
            try:
                return date.fromisoformat(value.strip())
            except ValueError:
                raise ValueError(f"{value!r} is not a date: write it like 2026-12-31.") from None
        return value

    @field_validator("explanation")
    @classmethod
    def _explained(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("Please say what caused the variance.")
        return value.strip()

    @field_validator("action_description")
    @classmethod
    def _action_described(cls, value: str, info: ValidationInfo) -> str:
        needed = info.data.get("corrective_action_needed", False)
        if needed and not value.strip():
            raise ValueError("Say what the corrective action is.")
        if value.strip() and not needed:
            raise ValueError("Tick “A corrective action is needed” for this action to be raised, or leave it empty.")
        return value.strip()

    @field_validator("action_due")
    @classmethod
    def _action_dated(cls, value: date | None, info: ValidationInfo) -> date | None:
        needed = info.data.get("corrective_action_needed", False)
        if needed and value is None:
            raise ValueError("Give the day the corrective action will be done by.")
        if value is not None and not needed:
            raise ValueError("A due date is for a corrective action: tick that one is needed, or leave it empty.")
        # Checked as the owner answers (engine.forms.answering), not when the answer is read back after that day.
        if value is not None and (given := answering(info)) is not None and value < given.today:
            raise ValueError(f"{value:%-d %b %Y} has passed: give a day from today on.")
        return value
