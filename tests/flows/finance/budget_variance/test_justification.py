"""The owner's justification form: what it accepts, what it refuses and why, and how an answer reads back later."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from engine import links, periods
from engine.answers import answer_of
from engine.forms import AnswerContext, validate_answer
from engine.human_steps import ask
from engine.settings import get_settings
from flows.finance.budget_variance.forms import BudgetJustification
from registry import HumanStep, StepStatus, session
from registry.clock import utcnow
from tests import factories
from tests.conftest import Gateway
from tests.links import answer_link

EXPLAINED = {"explanation": "Two unplanned site visits", "nature": "one-off"}


def _errors(values: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(ValidationError) as raised:
        BudgetJustification.model_validate(values)
    return {str(e["loc"][0]) if e["loc"] else "": e["msg"].removeprefix("Value error, ") for e in raised.value.errors()}


@pytest.mark.parametrize(("typed", "amount"), [
    ("12500", "12500"), ("12,500.50", "12500.50"), ("£12,500.50", "12500.50"), (" 12 500 ", "12500"),
    ("-250.00", "-250.00"), ("−250", "-250"), ("7600.5", "7600.50"),
])
def test_a_forecast_is_read_as_typed_in_the_organisation_s_locale(typed: str, amount: str) -> None:
    assert BudgetJustification.model_validate({**EXPLAINED, "revised_forecast": typed}).revised_forecast \
        == Decimal(amount)


def test_a_forecast_in_a_locale_that_writes_a_decimal_comma(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPS_LOCALE", "de_DE")
    get_settings.cache_clear()
    try:
        assert BudgetJustification.model_validate(
            {**EXPLAINED, "revised_forecast": "12.500,50 €"}).revised_forecast == Decimal("12500.50")
    finally:
        get_settings.cache_clear()


@pytest.mark.parametrize(("values", "field", "message"), [
    ({"explanation": "  ", "nature": "one-off", "revised_forecast": "1"}, "explanation", "Please say what caused"),
    ({**EXPLAINED, "revised_forecast": "lots"}, "revised_forecast", "Give the amount as a number"),
    ({**EXPLAINED, "revised_forecast": "1.2.3"}, "revised_forecast", "is not an amount"),
    ({**EXPLAINED, "revised_forecast": "1", "corrective_action_needed": True}, "action_description",
     "Say what the corrective action is."),
    ({**EXPLAINED, "revised_forecast": "1", "corrective_action_needed": True, "action_description": "Cut"},
     "action_due", "Give the day the corrective action will be done by."),
    ({**EXPLAINED, "revised_forecast": "1", "action_description": "Cut"}, "action_description",
     "for this action to be raised"),
    ({**EXPLAINED, "revised_forecast": "1", "action_due": "2030-01-01"}, "action_due", "A due date is for"),
    ({**EXPLAINED, "revised_forecast": "1", "corrective_action_needed": True, "action_description": "Cut",
      "action_due": "next week"}, "action_due", "is not a date"),
])
def test_an_invalid_answer_says_what_and_where(values: dict[str, Any], field: str, message: str) -> None:
    errors = _errors(values)
    assert field in errors and message in errors[field], errors


def test_an_action_due_in_the_past_is_refused_when_given_but_reads_back_later(registry_db: str) -> None:
    yesterday = periods.today() - timedelta(days=1)
    given = {**EXPLAINED, "revised_forecast": "1", "corrective_action_needed": True, "action_description": "Cut",
             "action_due": yesterday.isoformat()}
    with session() as db:
        answering = AnswerContext(step=HumanStep(form="budget_justification", details={}), db=db, now=utcnow())
        with pytest.raises(ValidationError, match="has passed"):
            validate_answer(BudgetJustification, given, answering)
        stored = validate_answer(BudgetJustification, {**given, "action_due": periods.today().isoformat()}, answering)
    kept = stored.model_dump(mode="json") | {"action_due": yesterday.isoformat()}
    answered = HumanStep(id=1, form="budget_justification", status=StepStatus.answered, answer=kept)
    assert answer_of(answered, BudgetJustification).action_due == yesterday  # type: ignore[union-attr]


def test_an_action_due_in_the_past_is_refused_at_the_gateway(gateway: Gateway) -> None:
    with session() as db:
        owner = factories.person(db, "Olga Owner")
        step = ask(db, key=f"justify-{owner.id}", person_id=owner.id or 0, form="budget_justification",
                   title="Justify IT 6310", subject_type="budget_explanation", subject_id=1,
                   due_at=utcnow() + timedelta(days=2))
        link = f"{gateway.url}/s/{links.issue(db, step=step, person_id=owner.id or 0)}"
    yesterday = periods.today() - timedelta(days=1)
    refused = answer_link(gateway.client, link, {**EXPLAINED, "revised_forecast": "1",
                                                 "corrective_action_needed": "true",
                                                 "action_description": "Cut", "action_due": yesterday.isoformat()})
    assert refused.status_code == 422 and "has passed: give a day from today on" in refused.text
    tomorrow = periods.today() + timedelta(days=1)
    accepted = answer_link(gateway.client, link, {**EXPLAINED, "revised_forecast": "1",
                                                  "corrective_action_needed": "true",
                                                  "action_description": "Cut", "action_due": tomorrow.isoformat()})
    # The confirmation reads as the owner ticked it, not as Python's True.
    assert accepted.status_code == 200
    assert "<th>A corrective action is needed</th><td>Yes</td>" in accepted.text and "True" not in accepted.text
