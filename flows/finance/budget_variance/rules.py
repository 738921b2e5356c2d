"""The budget variance's rules: plain functions, no Prefect, no database.

A line's kind is the registry's value as a plain string (registry.budget.LineKind is a StrEnum of the same):
an expense is favourable under budget, an income over it. A variance is actual − budget; its share is of the
budget (None when the budget is 0). The fiscal year is the calendar year.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

EXPENSE = "expense"
INCOME = "income"
NET = "net"  # income − expense: favourable when it comes out higher than budgeted, like an income

ZERO = Decimal("0.00")


def previous_month(today: date) -> date:
    """The first day of the month before `today`'s: the month a run on the 1st reports on."""
    return date(today.year - 1, 12, 1) if today.month == 1 else date(today.year, today.month - 1, 1)


def share(amount: Decimal, of: Decimal) -> float | None:
    """`amount` as a percentage of `of`; None when `of` is 0 (no budget: no share to speak of)."""
    return None if of == 0 else float(amount / abs(of) * 100)


def _favourable(kind: str, amount: Decimal) -> bool:
    """On budget is favourable; an expense over it or an income (or a net result) under it is not."""
    return amount <= 0 if kind == EXPENSE else amount >= 0


@dataclass(frozen=True)
class LineFigures:
    """One (cost centre, account) of a year as the ledger holds it, seen from one month."""

    cost_centre_id: int
    cost_centre: str  # its code
    account: str
    kind: str  # EXPENSE or INCOME
    month: date  # the first day of the month reported on
    budget: Decimal  # the month's current budget
    actual: Decimal
    committed: Decimal  # approved or ordered purchase requests of the month not invoiced yet
    budget_ytd: Decimal  # January to the month, current budget
    actual_ytd: Decimal
    committed_ytd: Decimal
    budget_year: Decimal  # the whole year, current budget
    budget_year_original: Decimal  # the whole year as first budgeted (version 1)
    budget_rest: Decimal  # the months after `month`, current budget
    cost_centre_name: str = ""


@dataclass(frozen=True)
class Variance:
    line: LineFigures
    amount: Decimal  # the month's actual − budget
    pct: float | None
    favourable: bool
    ytd_amount: Decimal
    ytd_pct: float | None
    ytd_favourable: bool
    committed: Decimal  # committed so far this year
    remaining: Decimal  # full-year budget − actual YTD − committed
    forecast: Decimal  # what the year will come to
    forecast_variance: Decimal  # forecast − full-year budget
    revised: bool  # the forecast is the owner's, not the budget's remaining months
    revision: Decimal  # full-year current − original budget (what revisions added)


def variance(line: LineFigures, revised_forecast: Decimal | None = None) -> Variance:
    """A line's variance for its month and year to date, what remains and what the year will come to.

    The forecast is the actuals so far plus the current budget of the months left, unless the owner gave a revised
    forecast: the whole year's figure, actuals included.
    """
    amount, ytd = line.actual - line.budget, line.actual_ytd - line.budget_ytd
    forecast = revised_forecast if revised_forecast is not None else line.actual_ytd + line.budget_rest
    return Variance(
        line=line, amount=amount, pct=share(amount, line.budget), favourable=_favourable(line.kind, amount),
        ytd_amount=ytd, ytd_pct=share(ytd, line.budget_ytd), ytd_favourable=_favourable(line.kind, ytd),
        committed=line.committed_ytd, remaining=line.budget_year - line.actual_ytd - line.committed_ytd,
        forecast=forecast, forecast_variance=forecast - line.budget_year, revised=revised_forecast is not None,
        revision=line.budget_year - line.budget_year_original)


def material(v: Variance, pct: float, amount: Decimal | float | int) -> bool:
    """Whether the month's variance asks for an explanation: unfavourable, at least `amount` off AND at least
    `pct` % off its budget. A line with no budget has no share: the amount alone decides."""
    if v.favourable or abs(v.amount) < Decimal(str(amount)):
        return False
    return v.pct is None or abs(v.pct) >= pct


HIGH_SHARE = 25.0  # a variance of at least this % of budget is a high-severity finding
HIGH, MEDIUM = "high", "medium"  # == registry.compliance.Criticality values


def severity(pct: float | None) -> str:
    """How severe the finding on a justified line is, by its variance's % of budget: HIGH from HIGH_SHARE, or on a
    line with no budget at all (nothing was ever meant to be spent there); MEDIUM below."""
    return HIGH if pct is None or abs(pct) >= HIGH_SHARE else MEDIUM


@dataclass(frozen=True)
class Sums:
    """Lines of one kind (or the net of both) added up."""

    kind: str
    budget: Decimal = ZERO
    actual: Decimal = ZERO
    committed: Decimal = ZERO
    budget_ytd: Decimal = ZERO
    actual_ytd: Decimal = ZERO
    committed_ytd: Decimal = ZERO
    budget_year: Decimal = ZERO
    budget_year_original: Decimal = ZERO
    forecast: Decimal = ZERO
    lines: int = 0

    @property
    def variance(self) -> Decimal:
        return self.actual - self.budget

    @property
    def pct(self) -> float | None:
        return share(self.variance, self.budget)

    @property
    def favourable(self) -> bool:
        return _favourable(self.kind, self.variance)

    @property
    def ytd_variance(self) -> Decimal:
        return self.actual_ytd - self.budget_ytd

    @property
    def ytd_pct(self) -> float | None:
        return share(self.ytd_variance, self.budget_ytd)

    @property
    def ytd_favourable(self) -> bool:
        return _favourable(self.kind, self.ytd_variance)

    @property
    def remaining(self) -> Decimal:
        return self.budget_year - self.actual_ytd - self.committed_ytd

    @property
    def forecast_variance(self) -> Decimal:
        return self.forecast - self.budget_year

    def plus(self, v: Variance) -> Sums:
        line = v.line
        return Sums(self.kind, self.budget + line.budget, self.actual + line.actual, self.committed + line.committed,
                    self.budget_ytd + line.budget_ytd, self.actual_ytd + line.actual_ytd,
                    self.committed_ytd + line.committed_ytd, self.budget_year + line.budget_year,
                    self.budget_year_original + line.budget_year_original, self.forecast + v.forecast,
                    self.lines + 1)


def _net(income: Sums, expense: Sums) -> Sums:
    """Income less expense, field by field; a commitment is money going out."""
    return Sums(NET, income.budget - expense.budget, income.actual - expense.actual,
                income.committed - expense.committed, income.budget_ytd - expense.budget_ytd,
                income.actual_ytd - expense.actual_ytd, income.committed_ytd - expense.committed_ytd,
                income.budget_year - expense.budget_year,
                income.budget_year_original - expense.budget_year_original, income.forecast - expense.forecast,
                income.lines + expense.lines)


@dataclass(frozen=True)
class Rollup:
    """A cost centre's lines (or every line, for the total), expense and income kept apart, and their net."""

    cost_centre_id: int | None  # None: the total
    cost_centre: str
    cost_centre_name: str
    expense: Sums = field(default_factory=lambda: Sums(EXPENSE))
    income: Sums = field(default_factory=lambda: Sums(INCOME))

    @property
    def net(self) -> Sums:
        return _net(self.income, self.expense)

    def plus(self, v: Variance) -> Rollup:
        if v.line.kind == INCOME:
            return Rollup(self.cost_centre_id, self.cost_centre, self.cost_centre_name, self.expense,
                          self.income.plus(v))
        return Rollup(self.cost_centre_id, self.cost_centre, self.cost_centre_name, self.expense.plus(v),
                      self.income)


def by_cost_centre(variances: Iterable[Variance]) -> list[Rollup]:
    """One roll-up per cost centre, in cost-centre code order."""
    found: dict[int, Rollup] = {}
    for v in variances:
        line = v.line
        rollup = found.get(line.cost_centre_id) or Rollup(line.cost_centre_id, line.cost_centre,
                                                          line.cost_centre_name)
        found[line.cost_centre_id] = rollup.plus(v)
    return sorted(found.values(), key=lambda r: (r.cost_centre, r.cost_centre_id or 0))


def total(variances: Iterable[Variance]) -> Rollup:
    """Every line added up: the company's expense, income and net."""
    rollup = Rollup(None, "", "")
    for v in variances:
        rollup = rollup.plus(v)
    return rollup
