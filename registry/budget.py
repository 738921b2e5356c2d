"""Budgets: cost centres, monthly budget lines in versions, actuals booked against them, and the explanations asked
for material variances.

A revision of a budget is a higher `version` of the same (cost centre, account, month); the CURRENT budget of a
line is its highest version, the ORIGINAL its version 1, and old versions are kept. The fiscal year is the
calendar year. Money is Decimal; months are the first day of the month.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from sqlalchemy import Column, ColumnElement, Index, Numeric, Select, UniqueConstraint, func
from sqlalchemy.orm import aliased
from sqlmodel import Field, Session, SQLModel, col, select

from registry.clock import utcnow
from registry.supply import PurchaseRequest, RequestStatus


class LineKind(StrEnum):
    expense = "expense"  # favourable when under budget
    income = "income"  # favourable when over budget


def _money() -> Column[Decimal]:
    return Column(Numeric(14, 2), nullable=False)


class CostCentre(SQLModel, table=True):
    __tablename__ = "cost_centre"

    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(unique=True, index=True, description="Natural key, as in the ledger.")
    name: str
    owner_id: int = Field(foreign_key="person.id", description="Who answers for its budget.")
    manager_id: int | None = Field(default=None, foreign_key="person.id",
                                   description="Who is escalated to; None: the owner's manager.")
    active: bool = True


class BudgetLine(SQLModel, table=True):
    """One month of one account's budget in one cost centre, in one version."""

    __tablename__ = "budget_line"
    __table_args__ = (
        UniqueConstraint("cost_centre_id", "account", "month", "version", name="uq_budget_line_version"),
        # A year's figures read every line of a range of months.
        Index("ix_budget_line_month", "month"),
    )

    id: int | None = Field(default=None, primary_key=True)
    cost_centre_id: int = Field(foreign_key="cost_centre.id")
    account: str
    month: date = Field(description="The first day of the month budgeted.")
    version: int = Field(default=1, description="1: the original budget; each revision one more.")
    kind: LineKind = LineKind.expense
    amount: Decimal = Field(sa_column=_money())
    imported_at: datetime = Field(default_factory=utcnow)


class Actual(SQLModel, table=True):
    """An amount booked in the ledger; a reference equal to a purchase request's key invoices that request."""

    __table_args__ = (
        UniqueConstraint("reference", "cost_centre_id", "account", name="uq_actual_reference"),
        # The ledger reads a year of every cost centre; a purchase request's check one cost centre's year.
        Index("ix_actual_booked_on", "booked_on"),
        Index("ix_actual_cost_centre_booked_on", "cost_centre_id", "booked_on"),
    )

    id: int | None = Field(default=None, primary_key=True)
    cost_centre_id: int = Field(foreign_key="cost_centre.id")
    account: str
    booked_on: date
    amount: Decimal = Field(sa_column=_money())
    reference: str


class BudgetExplanation(SQLModel, table=True):
    """One justification asked of a cost centre's owner for a material line of one month."""

    __tablename__ = "budget_explanation"
    __table_args__ = (UniqueConstraint("month", "cost_centre_id", "account", name="uq_budget_explanation_line"),)

    id: int | None = Field(default=None, primary_key=True)
    occasion_id: int = Field(foreign_key="occasion.id", index=True)
    month: date
    cost_centre_id: int = Field(foreign_key="cost_centre.id")
    account: str
    variance: Decimal = Field(sa_column=_money())
    variance_pct: float | None = None
    step_id: int | None = Field(default=None, foreign_key="human_step.id")
    finding_id: int | None = Field(default=None, foreign_key="finding.id")
    created_at: datetime = Field(default_factory=utcnow)


@dataclass(frozen=True)
class Position:
    """Where one cost centre's expense budget stands for a year: what a purchase request is checked against."""

    budget_year: Decimal  # the current budget of the year's expense lines
    actual_ytd: Decimal  # booked so far this year, income accounts left out
    committed: Decimal  # approved or ordered purchase requests not invoiced yet
    remaining: Decimal  # budget_year - actual_ytd - committed

    @property
    def spent_or_committed(self) -> Decimal:
        return self.actual_ytd + self.committed


CENT = Decimal("0.01")
COMMITTED_STATUSES = (RequestStatus.approved, RequestStatus.ordered)


def cents(value: Decimal | float | int | None) -> Decimal:
    """A database sum as money: SQLite sums NUMERIC as floating point, so it is rounded back to the cent."""
    if isinstance(value, Decimal):
        return value.quantize(CENT)
    return Decimal(str(value or 0)).quantize(CENT)


def year_bounds(year: int) -> tuple[date, date]:
    """The fiscal year (the calendar year): its first day and the first day of the next."""
    return date(year, 1, 1), date(year + 1, 1, 1)


def _moments(year: int) -> tuple[datetime, datetime]:
    start, end = year_bounds(year)
    return (datetime(start.year, 1, 1, tzinfo=UTC), datetime(end.year, 1, 1, tzinfo=UTC))


def current_lines(start: date, end: date) -> Select[Any]:
    """The budget lines of months in [start, end) at their current version (the highest of their month)."""
    newer = aliased(BudgetLine)
    later = (select(newer.id).where(newer.cost_centre_id == BudgetLine.cost_centre_id,
                                    newer.account == BudgetLine.account, newer.month == BudgetLine.month,
                                    newer.version > BudgetLine.version).exists())
    return select(BudgetLine).where(col(BudgetLine.month) >= start, col(BudgetLine.month) < end, ~later)


def _not_invoiced() -> ColumnElement[bool]:
    return ~select(Actual.id).where(Actual.reference == PurchaseRequest.key).exists()


def _committed_in(year: int) -> list[ColumnElement[bool]]:
    first, after = _moments(year)
    return [col(PurchaseRequest.status).in_(COMMITTED_STATUSES), col(PurchaseRequest.created_at) >= first,
            col(PurchaseRequest.created_at) < after, _not_invoiced()]


def position(db: Session, cost_centre_id: int, year: int) -> Position:
    """One cost centre's `positions`."""
    return positions(db, [cost_centre_id], year)[cost_centre_id]


def positions(db: Session, cost_centre_ids: Iterable[int], year: int) -> dict[int, Position]:
    """One statement for many cost centres: each one's expense budget of the year (its current expense lines), what
    is booked against it (actuals, except on accounts with an income line in the year) and what is committed
    (approved or ordered requests created in the year that no actual invoices). Every cost centre asked for is
    in the result, zeros where it has nothing.

    An account booked without any budget line counts as expense (spending nobody budgeted is still spending).
    """
    wanted = set(cost_centre_ids)
    if not wanted:
        return {}
    start, end = year_bounds(year)
    lines = current_lines(start, end).where(col(BudgetLine.cost_centre_id).in_(wanted),
                                            col(BudgetLine.kind) == LineKind.expense).subquery()
    budget = (select(lines.c.cost_centre_id.label("centre"), func.sum(lines.c.amount).label("amount"))
              .group_by(lines.c.cost_centre_id).subquery())
    income = aliased(BudgetLine)
    is_income = (select(income.id).where(income.cost_centre_id == Actual.cost_centre_id,
                                         income.account == Actual.account, income.kind == LineKind.income,
                                         col(income.month) >= start, col(income.month) < end).exists())
    actual = (select(col(Actual.cost_centre_id).label("centre"), func.sum(Actual.amount).label("amount"))
              .where(col(Actual.cost_centre_id).in_(wanted), col(Actual.booked_on) >= start,
                     col(Actual.booked_on) < end, ~is_income)
              .group_by(col(Actual.cost_centre_id)).subquery())
    committed = (select(col(PurchaseRequest.cost_centre_id).label("centre"),
                        func.sum(PurchaseRequest.amount).label("amount"))
                 .where(col(PurchaseRequest.cost_centre_id).in_(wanted), *_committed_in(year))
                 .group_by(col(PurchaseRequest.cost_centre_id)).subquery())
    rows = db.execute(
        select(col(CostCentre.id), budget.c.amount, actual.c.amount, committed.c.amount)
        .outerjoin(budget, budget.c.centre == CostCentre.id).outerjoin(actual, actual.c.centre == CostCentre.id)
        .outerjoin(committed, committed.c.centre == CostCentre.id).where(col(CostCentre.id).in_(wanted)))
    found: dict[int, Position] = {}
    for centre, budget_year, actual_ytd, committed_now in rows:
        b, a, c = cents(budget_year), cents(actual_ytd), cents(committed_now)
        found[centre] = Position(b, a, c, b - a - c)
    return found


def commitments(db: Session, year: int) -> dict[tuple[int, str, date], Decimal]:
    """One query: what approved or ordered purchase requests not yet invoiced commit, by (cost centre, account,
    month of the request's creation); requests charged to no cost centre are left out."""
    month = func.extract("month", col(PurchaseRequest.created_at))
    rows = db.execute(
        select(PurchaseRequest.cost_centre_id, PurchaseRequest.account, month, func.sum(PurchaseRequest.amount))
        .where(col(PurchaseRequest.cost_centre_id).is_not(None), *_committed_in(year))
        .group_by(col(PurchaseRequest.cost_centre_id), col(PurchaseRequest.account), month))
    return {(int(centre), account, date(year, int(number), 1)): cents(amount)
            for centre, account, number, amount in rows}
