"""The month's deadline is its occasion's: set when the justifications are first asked, kept by a re-run given
another window; a month opened before occasions held one reads the deadline its steps were asked with."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import update
from sqlmodel import col, select

from flows.finance.budget_variance import tasks
from flows.finance.budget_variance.flow import budget_variance
from registry import BudgetExplanation, HumanStep, Occasion, session
from registry.clock import as_utc
from tests.conftest import Mailbox
from tests.flows.finance.budget_variance.test_flow import MONTH, _organisation


def _month() -> tuple[Occasion, set[datetime]]:
    with session() as db:
        occasion = db.exec(select(Occasion).where(Occasion.process == "budget-variance")).one()
        steps = {as_utc(due) for due in db.exec(select(HumanStep.due_at).join(
            BudgetExplanation, col(BudgetExplanation.step_id) == HumanStep.id))}
    return occasion, steps


def test_the_month_keeps_the_deadline_and_parameters_of_the_run_that_opened_it(prefect_api: str,
                                                                               smtp: Mailbox) -> None:
    _organisation()
    opened = budget_variance(month=MONTH, justification_days=4, materiality_amount=900)
    assert opened.status == "collecting" and opened.material == 3
    occasion, steps = _month()
    assert occasion.due_at is not None and steps == {as_utc(occasion.due_at)}, "the steps are due when the month is"
    assert occasion.parameters is not None
    assert (occasion.parameters["month"], occasion.parameters["justification_days"],
            occasion.parameters["materiality_amount"], occasion.parameters["preview"]) == (MONTH, 4, 900, False)

    budget_variance(month=MONTH, justification_days=9)
    again, _ = _month()
    assert (again.due_at, again.parameters) == (occasion.due_at, occasion.parameters), \
        "a re-run given another window moves neither"


def test_a_month_opened_before_occasions_held_a_deadline_reads_its_steps(prefect_api: str, smtp: Mailbox) -> None:
    _organisation()
    budget_variance(month=MONTH)
    occasion, steps = _month()
    with session() as db:
        db.execute(update(Occasion).where(col(Occasion.id) == occasion.id).values(due_at=None))
    asking = tasks.Asking(month=MONTH, materiality_pct=10, materiality_amount=1000, days=9)
    state = tasks.open_month.fn(asking)
    assert {as_utc(state.due_at)} == steps and state.asked == 0, "the steps' deadline, not a new window's"
    older, _ = _month()
    assert older.due_at is None, "reading the steps' deadline writes nothing"
