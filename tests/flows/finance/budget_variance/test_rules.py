from __future__ import annotations

from dataclasses import replace
from datetime import date
from decimal import Decimal

import pytest

from flows.finance.budget_variance import rules
from flows.finance.budget_variance.rules import (
    EXPENSE,
    INCOME,
    LineFigures,
    by_cost_centre,
    material,
    previous_month,
    total,
    variance,
)

NOVEMBER = date(2026, 11, 1)


def line(budget: str = "1000", actual: str = "1000", *, kind: str = EXPENSE, centre: int = 1, account: str = "6000",
         committed: str = "0", budget_ytd: str = "11000", actual_ytd: str = "11000", committed_ytd: str = "0",
         budget_year: str = "12000", original: str | None = None, rest: str = "1000") -> LineFigures:
    return LineFigures(
        cost_centre_id=centre, cost_centre=f"CC{centre}", account=account, kind=kind, month=NOVEMBER,
        budget=Decimal(budget), actual=Decimal(actual), committed=Decimal(committed), budget_ytd=Decimal(budget_ytd),
        actual_ytd=Decimal(actual_ytd), committed_ytd=Decimal(committed_ytd), budget_year=Decimal(budget_year),
        budget_year_original=Decimal(original if original is not None else budget_year), budget_rest=Decimal(rest),
        cost_centre_name=f"Centre {centre}")


@pytest.mark.parametrize(("figures", "amount", "pct", "favourable"), [
    (line("1000", "1250"), "250", 25.0, False),  # expense over budget
    (line("1000", "800"), "-200", -20.0, True),  # expense under budget
    (line("1000", "1000"), "0", 0.0, True),  # on budget
    (line("5000", "4000", kind=INCOME), "-1000", -20.0, False),  # income short of budget
    (line("5000", "5600", kind=INCOME), "600", 12.0, True),  # income above budget
    (line("1000", "0"), "-1000", -100.0, True),  # a month with no actuals: nothing spent
    (line("0", "0", kind=INCOME), "0", None, True),  # no income budgeted, none received
    (line("5000", "0", kind=INCOME), "-5000", -100.0, False),  # a month with no actuals: no income came
    (line("0", "1500"), "1500", None, False),  # spent with no budget: no share, still over
])
def test_the_month_variance_is_actual_less_budget_favourable_by_kind(
        figures: LineFigures, amount: str, pct: float | None, favourable: bool) -> None:
    v = variance(figures)
    assert (v.amount, v.pct, v.favourable) == (Decimal(amount), pct, favourable)


@pytest.mark.parametrize(("figures", "ytd", "ytd_pct", "favourable"), [
    (line(budget_ytd="11000", actual_ytd="12100"), "1100", 10.0, False),
    (line(budget_ytd="11000", actual_ytd="9900"), "-1100", -10.0, True),
    (line(kind=INCOME, budget_ytd="55000", actual_ytd="60500"), "5500", 10.0, True),
    (line(budget_ytd="0", actual_ytd="300"), "300", None, False),
])
def test_the_year_to_date_variance(figures: LineFigures, ytd: str, ytd_pct: float | None, favourable: bool) -> None:
    v = variance(figures)
    assert (v.ytd_amount, v.ytd_pct, v.ytd_favourable) == (Decimal(ytd), ytd_pct, favourable)


@pytest.mark.parametrize(("figures", "pct", "amount", "expected"), [
    (line("10000", "11500"), 10, 1000, True),  # 15 % and 1,500 over
    (line("10000", "11000"), 10, 1000, True),  # exactly at both thresholds
    (line("10000", "10999"), 10, 1000, False),  # 9.99 %: under the share
    (line("100000", "105000"), 10, 1000, False),  # 5,000 over but only 5 %
    (line("5000", "5900"), 10, 1000, False),  # 18 % over but only 900
    (line("10000", "8000"), 10, 1000, False),  # under budget: favourable is never material
    (line("0", "1200"), 10, 1000, True),  # no budget: the amount alone
    (line("0", "999"), 10, 1000, False),
    (line("20000", "17000", kind=INCOME), 10, 1000, True),  # income 15 % short
    (line("20000", "23000", kind=INCOME), 10, 1000, False),  # income above budget
    (line("10000", "11500"), 20, 1000, False),  # a stricter share
    (line("10000", "11500"), 10, Decimal("2000"), False),  # a stricter amount
])
def test_materiality_needs_an_unfavourable_variance_over_both_the_amount_and_the_share(
        figures: LineFigures, pct: float, amount: Decimal | int, expected: bool) -> None:
    assert material(variance(figures), pct, amount) is expected


def test_remaining_is_the_year_budget_less_what_is_booked_and_committed() -> None:
    v = variance(line(budget_year="12000", actual_ytd="10500", committed="300", committed_ytd="700"))
    assert (v.committed, v.remaining) == (Decimal("700"), Decimal("800"))
    assert variance(line(budget_year="12000", actual_ytd="12500", committed_ytd="200")).remaining == Decimal("-700")


@pytest.mark.parametrize(("revised", "forecast", "over", "is_revised"), [
    (None, "13500", "1500", False),  # 12,500 booked to November + December's 1,000 budgeted
    (Decimal("14200"), "14200", "2200", True),  # the owner expects more
    (Decimal("12000"), "12000", "0", True),  # the owner expects to come back on budget
])
def test_the_forecast_is_actuals_plus_the_months_left_unless_the_owner_revised_it(
        revised: Decimal | None, forecast: str, over: str, is_revised: bool) -> None:
    v = variance(line(budget_year="12000", actual_ytd="12500", rest="1000"), revised)
    assert (v.forecast, v.forecast_variance, v.revised) == (Decimal(forecast), Decimal(over), is_revised)


def test_a_mid_year_revision_shows_against_the_original_budget() -> None:
    # Revised from July: 1,000 a month became 1,500; November compares with the revision, not the original.
    revised = line("1500", "1600", budget_ytd="13500", actual_ytd="13800", budget_year="15000", original="12000",
                   rest="1500")
    v = variance(revised)
    assert (v.amount, v.ytd_amount, v.revision, v.forecast) == (
        Decimal("100"), Decimal("300"), Decimal("3000"), Decimal("15300"))
    assert not material(v, 10, 1000)
    unrevised = variance(line("1000", "1600", budget_ytd="11000", actual_ytd="13800", rest="1000"))
    assert (unrevised.amount, unrevised.revision) == (Decimal("600"), Decimal("0"))


def test_roll_ups_keep_expense_and_income_apart_per_cost_centre_and_in_total() -> None:
    variances = [variance(v) for v in (
        line("1000", "1300", centre=2, account="6000", budget_ytd="11000", actual_ytd="11300", committed="50",
             committed_ytd="50", budget_year="12000"),
        line("500", "400", centre=2, account="6100", budget_ytd="5500", actual_ytd="5000", budget_year="6000",
             rest="500"),
        line("8000", "7000", kind=INCOME, centre=2, account="4000", budget_ytd="88000", actual_ytd="87000",
             budget_year="96000", rest="8000"),
        line("2000", "2600", centre=1, account="6000", budget_ytd="22000", actual_ytd="22600", budget_year="24000",
             original="20000", rest="2000"),
    )]
    first, second = by_cost_centre(variances)
    assert (first.cost_centre, first.cost_centre_name, second.cost_centre) == ("CC1", "Centre 1", "CC2")
    assert (second.expense.budget, second.expense.actual, second.expense.variance, second.expense.lines) == (
        Decimal("1500"), Decimal("1700"), Decimal("200"), 2)
    assert second.expense.pct == pytest.approx(13.333, abs=0.001) and not second.expense.favourable
    assert (second.income.variance, second.income.favourable) == (Decimal("-1000"), False)
    assert (second.net.budget, second.net.actual, second.net.variance, second.net.favourable) == (
        Decimal("6500"), Decimal("5300"), Decimal("-1200"), False)
    assert (second.expense.committed, second.expense.remaining) == (Decimal("50"), Decimal("1650"))
    assert second.expense.forecast == Decimal("11300") + Decimal("1000") + Decimal("5000") + Decimal("500")
    assert first.income.lines == 0 and first.income.pct is None and first.net.variance == Decimal("-600")

    company = total(variances)
    assert company.cost_centre_id is None
    assert (company.expense.budget, company.expense.actual, company.income.actual) == (
        Decimal("3500"), Decimal("4300"), Decimal("7000"))
    assert (company.expense.budget_year, company.expense.budget_year_original) == (Decimal("42000"),
                                                                                   Decimal("38000"))
    assert (company.expense.ytd_variance, company.net.ytd_variance) == (Decimal("400"), Decimal("-1400"))
    assert company.net.variance == Decimal("-1800") and company.net.pct == pytest.approx(-1800 / 4500 * 100)
    assert total([]).net.variance == 0 and by_cost_centre([]) == []


def test_a_revised_forecast_counts_in_the_roll_up() -> None:
    figures = line("1000", "1000", budget_year="12000", actual_ytd="11000", rest="1000")
    assert total([variance(figures, Decimal("15000"))]).expense.forecast_variance == Decimal("3000")
    assert total([variance(replace(figures, kind=INCOME))]).income.forecast_variance == Decimal("0")


@pytest.mark.parametrize(("today", "month"), [
    (date(2026, 12, 1), date(2026, 11, 1)), (date(2027, 1, 1), date(2026, 12, 1)),
    (date(2026, 3, 31), date(2026, 2, 1)),
])
def test_a_run_reports_on_the_month_before_it(today: date, month: date) -> None:
    assert previous_month(today) == month


@pytest.mark.parametrize(("pct", "expected"), [
    (None, rules.HIGH),  # no budget at all: nothing was meant to be spent there
    (25.0, rules.HIGH),  # the threshold itself is high
    (-25.0, rules.HIGH),  # an income short by a quarter of its budget
    (80.0, rules.HIGH),
    (24.99, rules.MEDIUM),
    (10.0, rules.MEDIUM),
    (0.0, rules.MEDIUM),
])
def test_a_findings_severity_follows_its_lines_share_of_budget(pct: float | None, expected: str) -> None:
    assert rules.severity(pct) == expected
