"""Budgets: cost centres, monthly budget lines in versions, actuals booked against them, and the explanations asked
for material variances.

A revision of a budget is a higher `version` of the same (cost centre, account, month); the CURRENT budget of a
line is its highest version, the ORIGINAL its version 1, and old versions are kept. The fiscal year is the
calendar year. Money is Decimal; months are the first day of the month.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum

from sqlalchemy import Column, Index, Numeric, UniqueConstraint
from sqlmodel import Field, SQLModel

from registry.clock import utcnow


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
