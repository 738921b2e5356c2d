"""The budget section of the operations report: the month's expenses, income and net against budget, for the month
and the year to date, the cost centres furthest over, and where the month's justifications and pack stand.

Cheap to import (no Prefect): the operations report builds it through engine.processes.Section.
"""

from __future__ import annotations

from typing import Any

from sqlmodel import Session, col, select

from engine import occasions, periods
from engine.answers import answer_of
from engine.periods import Period
from engine.settings import get_settings
from flows.finance.budget_variance import ledger, rules
from flows.finance.budget_variance.forms import BudgetJustification
from registry import BudgetExplanation, HumanStep

PROCESS = "budget-variance"
TOP_CENTRES = 5


def reported_month(period: Period) -> Period:
    """The month the section reports on: the one the period ends in, or this month while that is still ahead."""
    return periods.month_of(min(period.end, periods.today()))


def build(db: Session, period: Period) -> dict[str, Any] | None:
    """What the section shows for `period`; None when the month's year holds no budget, actual or commitment."""
    month = reported_month(period)
    lines = ledger.figures(db, month.start)
    if not lines:
        return None
    asked = list(db.exec(select(BudgetExplanation, HumanStep)
                         .join(HumanStep, col(HumanStep.id) == BudgetExplanation.step_id)
                         .where(BudgetExplanation.month == month.start)))
    answers = {(e.cost_centre_id, e.account): answer_of(step, BudgetJustification) for e, step in asked}
    forecasts = {key: a.revised_forecast for key, a in answers.items() if a is not None}
    variances = [rules.variance(line, forecasts.get((line.cost_centre_id, line.account))) for line in lines]
    total = rules.total(variances)
    over = sorted((r for r in rules.by_cost_centre(variances) if not r.expense.ytd_favourable),
                  key=lambda r: r.expense.ytd_variance, reverse=True)[:TOP_CENTRES]
    occasion = occasions.find(db, PROCESS, month.name)
    received = sum(a is not None for a in answers.values())
    currency = get_settings().currency
    e, net = total.expense, total.net
    return {
        "month": {"key": month.name, "label": month.label, "start": month.start},
        "total": total, "over": over, "material": len(asked), "received": received,
        "missing": len(asked) - received,
        "pack": {"status": occasion.status.value, "phase": occasion.phase} if occasion else None,
        "figures": [
            (f"Expenses budget {month.name}", e.budget, currency),
            (f"Expenses actual {month.name}", e.actual, currency),
            (f"Expenses variance {month.name}", e.variance, currency),
            ("Expenses budget year to date", e.budget_ytd, currency),
            ("Expenses actual year to date", e.actual_ytd, currency),
            ("Expenses variance year to date", e.ytd_variance, currency),
            ("Expenses committed", e.committed_ytd, currency),
            ("Income actual year to date", total.income.actual_ytd, currency),
            ("Net variance year to date", net.ytd_variance, currency),
            ("Net forecast variance for the year", net.forecast_variance, currency),
            ("Material lines", len(asked), ""), ("Justifications received", received, ""),
            ("Justifications missing", len(asked) - received, ""),
        ],
    }
