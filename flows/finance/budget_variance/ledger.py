"""What the ledger holds for a month's budget variance, read in four aggregate queries (not one per line).

Budgets count at their current version (the highest of each cost centre, account and month), the original year
at version 1; actuals and commitments are summed for the month and the year to date.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, case, func, select
from sqlmodel import Session, col

from flows.finance.budget_variance.rules import EXPENSE, INCOME, LineFigures
from registry import Actual, BudgetLine, CostCentre, LineKind, PurchaseRequest
from registry.budget import COMMITTED_STATUSES, cents

Key = tuple[int, str]


def _next_month(month: date) -> date:
    return date(month.year + 1, 1, 1) if month.month == 12 else date(month.year, month.month + 1, 1)


def _sum_if(condition: ColumnElement[bool], amount: Any) -> Any:
    return func.sum(case((condition, amount), else_=0))


def _budgets(db: Session, month: date) -> dict[Key, tuple[Any, ...]]:
    """Per (cost centre, account): income?, the month's, year-to-date, whole year's, original year's and the
    remaining months' budget."""
    start, end = date(month.year, 1, 1), date(month.year + 1, 1, 1)
    in_year = and_(col(BudgetLine.month) >= start, col(BudgetLine.month) < end)
    latest = (select(col(BudgetLine.cost_centre_id), col(BudgetLine.account), col(BudgetLine.month),
                     func.max(col(BudgetLine.version)).label("version"))
              .where(in_year).group_by(col(BudgetLine.cost_centre_id), col(BudgetLine.account),
                                       col(BudgetLine.month)).subquery())
    current = col(BudgetLine.version) == latest.c.version
    amount = col(BudgetLine.amount)
    rows = db.execute(
        select(col(BudgetLine.cost_centre_id), col(BudgetLine.account),
               func.max(case((and_(current, col(BudgetLine.kind) == LineKind.income), 1), else_=0)),
               _sum_if(and_(current, col(BudgetLine.month) == month), amount),
               _sum_if(and_(current, col(BudgetLine.month) <= month), amount),
               _sum_if(current, amount),
               _sum_if(col(BudgetLine.version) == 1, amount),
               _sum_if(and_(current, col(BudgetLine.month) > month), amount))
        .join(latest, and_(latest.c.cost_centre_id == BudgetLine.cost_centre_id,
                           latest.c.account == BudgetLine.account, latest.c.month == BudgetLine.month))
        .where(in_year)
        .group_by(col(BudgetLine.cost_centre_id), col(BudgetLine.account)))
    return {(centre, account): tuple(rest) for centre, account, *rest in rows}


def _actuals(db: Session, month: date) -> dict[Key, tuple[Any, ...]]:
    """Per (cost centre, account): booked in the month, and January to the month."""
    booked = col(Actual.booked_on)
    rows = db.execute(
        select(col(Actual.cost_centre_id), col(Actual.account), _sum_if(booked >= month, col(Actual.amount)),
               func.sum(col(Actual.amount)))
        .where(booked >= date(month.year, 1, 1), booked < _next_month(month))
        .group_by(col(Actual.cost_centre_id), col(Actual.account)))
    return {(centre, account): tuple(rest) for centre, account, *rest in rows}


def _committed(db: Session, month: date) -> dict[Key, tuple[Any, ...]]:
    """Per (cost centre, account): approved or ordered requests not yet invoiced, created in the month and
    January to the month."""
    created, after = col(PurchaseRequest.created_at), _next_month(month)
    invoiced = select(col(Actual.id)).where(col(Actual.reference) == col(PurchaseRequest.key)).exists()
    rows = db.execute(
        select(col(PurchaseRequest.cost_centre_id), col(PurchaseRequest.account),
               _sum_if(created >= _moment(month), col(PurchaseRequest.amount)),
               func.sum(col(PurchaseRequest.amount)))
        .where(col(PurchaseRequest.cost_centre_id).is_not(None), col(PurchaseRequest.status).in_(COMMITTED_STATUSES),
               created >= _moment(date(month.year, 1, 1)), created < _moment(after), ~invoiced)
        .group_by(col(PurchaseRequest.cost_centre_id), col(PurchaseRequest.account)))
    return {(int(centre), account): tuple(rest) for centre, account, *rest in rows}


def _moment(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def _centres(db: Session, ids: Iterable[int]) -> dict[int, tuple[str, str]]:
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    return {centre: (code, name) for centre, code, name in db.execute(
        select(col(CostCentre.id), col(CostCentre.code), col(CostCentre.name)).where(col(CostCentre.id).in_(wanted)))}


_NO_BUDGET = (0, 0, 0, 0, 0, 0)
_NONE = (0, 0)


def figures(db: Session, month: date) -> list[LineFigures]:
    """Every (cost centre, account) with budget, actuals or commitments in `month`'s year, seen from `month`:
    its budget, actuals and commitments for the month and the year to date, the whole year's current and original
    budget and the budget of the months left; in cost centre code and account order.

    An account with actuals or commitments but no budget line is an expense (spending nobody budgeted).
    """
    month = month.replace(day=1)
    budgets, actuals, committed = _budgets(db, month), _actuals(db, month), _committed(db, month)
    keys = budgets.keys() | actuals.keys() | committed.keys()
    centres = _centres(db, (centre for centre, _ in keys))
    found = []
    for key in keys:
        income, budget, budget_ytd, budget_year, original, rest = budgets.get(key, _NO_BUDGET)
        actual, actual_ytd = actuals.get(key, _NONE)
        month_committed, committed_ytd = committed.get(key, _NONE)
        code, name = centres[key[0]]
        found.append(LineFigures(
            cost_centre_id=key[0], cost_centre=code, account=key[1], kind=INCOME if income else EXPENSE,
            month=month, budget=cents(budget), actual=cents(actual), committed=cents(month_committed),
            budget_ytd=cents(budget_ytd), actual_ytd=cents(actual_ytd), committed_ytd=cents(committed_ytd),
            budget_year=cents(budget_year), budget_year_original=cents(original), budget_rest=cents(rest),
            cost_centre_name=name))
    return sorted(found, key=lambda line: (line.cost_centre, line.account))


