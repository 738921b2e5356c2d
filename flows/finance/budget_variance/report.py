"""The variance pack: the month's table per line with roll-ups per cost centre and in total, a chart per cost
centre, the justifications received and those missing — as HTML and PDF, a CSV of every figure, and artifacts."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from functools import cached_property
from pathlib import Path
from typing import Any

from engine.exports import csv_bytes
from engine.periods import Period
from engine.reports import report_path, save_pdf, save_report
from engine.templates import render_page
from flows.finance.budget_variance import charts, rules
from flows.finance.budget_variance.forms import BudgetJustification

TEMPLATES = "finance/budget_variance"
ARTIFACT_KEY = "budget-variance-pack"


@dataclass(frozen=True)
class Justification:
    """One material line's justification, asked of its cost centre's owner: given, or still missing."""

    cost_centre_id: int
    cost_centre: str
    cost_centre_name: str
    account: str
    owner: str
    variance: Decimal  # the month's variance when it was asked
    variance_pct: float | None
    asked_at: datetime
    due_at: datetime
    answer: BudgetJustification | None = None
    answered_by: str = ""  # someone other than the owner (a delegate, the manager it was escalated to)
    answered_at: datetime | None = None
    escalation: tuple[str, ...] = ()  # whom an overdue justification goes to: the owner's and the centre's managers
    escalated: bool = False  # the sweep has told them
    status: str = "pending"  # the step's: pending, answered, escalated, expired, cancelled
    action_due: datetime | None = None  # the corrective action raised from it
    action_severity: str = ""

    @property
    def line(self) -> str:
        return f"{self.cost_centre} · {self.account}"

    @property
    def share(self) -> float | None:
        return None if self.variance_pct is None else self.variance_pct / 100


@dataclass(frozen=True)
class CentreBlock:
    """One cost centre in the pack: its roll-up, its lines and its chart."""

    rollup: rules.Rollup
    lines: list[rules.Variance]
    owner: str
    chart: str | None  # a data: URI


@dataclass(frozen=True)
class Pack:
    """The files of one round of a month's pack."""

    html: Path
    pdf: Path
    csv: Path
    html_sha256: str
    pdf_sha256: str
    csv_sha256: str


@dataclass(frozen=True)
class Contents:
    """Everything the pack shows, computed once for the HTML, the CSV, the artifacts and the sign-off."""

    period: Period
    variances: list[rules.Variance]
    centres: list[CentreBlock]
    total: rules.Rollup
    justifications: list[Justification]
    round: int
    generated_at: datetime
    materiality: dict[str, Any] = field(default_factory=dict)

    @property
    def received(self) -> list[Justification]:
        return [j for j in self.justifications if j.answer is not None]

    @property
    def missing(self) -> list[Justification]:
        return [j for j in self.justifications if j.answer is None]

    @property
    def actions(self) -> list[Justification]:
        return [j for j in self.received if j.action_due is not None]

    def state_of(self, v: rules.Variance) -> str:
        """A line's justification in the table: received, missing, or nothing asked."""
        j = self._asked.get((v.line.cost_centre_id, v.line.account))
        return "" if j is None else "received" if j.answer is not None else "missing"

    @cached_property
    def _asked(self) -> dict[tuple[int, str], Justification]:
        return {(j.cost_centre_id, j.account): j for j in self.justifications}

    @cached_property
    def _lines(self) -> dict[tuple[int, str], rules.Variance]:
        return {(v.line.cost_centre_id, v.line.account): v for v in self.variances}

    def variance_of(self, j: Justification) -> rules.Variance | None:
        """The line a justification is about, as the pack shows it."""
        return self._lines.get((j.cost_centre_id, j.account))

    def summary(self) -> dict[str, Any]:
        """The headline figures: the sign-off's message and page, the artifact."""
        expense = self.total.expense
        return {"expense_budget": expense.budget, "expense_actual": expense.actual,
                "expense_variance": expense.variance, "expense_budget_ytd": expense.budget_ytd,
                "expense_actual_ytd": expense.actual_ytd, "expense_variance_ytd": expense.ytd_variance,
                "net_variance_ytd": self.total.net.ytd_variance, "committed": expense.committed_ytd,
                "forecast_variance": self.total.net.forecast_variance, "lines": len(self.variances),
                "material": len(self.justifications), "received": len(self.received),
                "missing": len(self.missing), "findings": len(self.actions)}


def contents(period: Period, variances: list[rules.Variance], justifications: list[Justification],
             owners: dict[int, str], round_no: int, generated_at: datetime,
             materiality: dict[str, Any]) -> Contents:
    """The pack's contents; the charts drawn here, one per cost centre."""
    by_centre: dict[int, list[rules.Variance]] = {}
    for v in variances:
        by_centre.setdefault(v.line.cost_centre_id, []).append(v)
    blocks = []
    for rollup in rules.by_cost_centre(variances):
        mine = by_centre.get(rollup.cost_centre_id or 0, [])
        drawn = charts.cost_centre(mine)
        blocks.append(CentreBlock(rollup=rollup, lines=mine, owner=owners.get(rollup.cost_centre_id or 0, ""),
                                  chart=f"data:image/png;base64,{base64.b64encode(drawn).decode()}" if drawn else None))
    return Contents(period=period, variances=variances, centres=blocks, total=rules.total(variances),
                    justifications=justifications, round=round_no, generated_at=generated_at,
                    materiality=materiality)


COLUMNS = ("level", "cost_centre", "cost_centre_name", "account", "kind", "month", "budget", "actual", "variance",
           "variance_pct", "favourable", "budget_ytd", "actual_ytd", "variance_ytd", "variance_ytd_pct",
           "favourable_ytd", "committed_month", "committed_ytd", "remaining", "budget_year", "budget_year_original",
           "revision", "forecast", "forecast_variance", "forecast_by", "justification")


def _pct(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"


def _sums_row(level: str, code: str, name: str, s: rules.Sums, month: date) -> list[object]:
    return [level, code, name, "", s.kind, month.isoformat(), s.budget, s.actual, s.variance, _pct(s.pct),
            s.favourable, s.budget_ytd, s.actual_ytd, s.ytd_variance, _pct(s.ytd_pct), s.ytd_favourable,
            s.committed, s.committed_ytd, s.remaining, s.budget_year, s.budget_year_original,
            s.budget_year - s.budget_year_original, s.forecast, s.forecast_variance, "", ""]


def figures(pack: Contents) -> list[list[object]]:
    """Every figure of the pack, one row per line, then each cost centre's and the total's expense, income and
    net: what a spreadsheet reconciles the PDF with."""
    month = pack.period.start
    rows: list[list[object]] = []
    for v in pack.variances:
        line = v.line
        rows.append(["line", line.cost_centre, line.cost_centre_name, line.account, line.kind, month.isoformat(),
                     line.budget, line.actual, v.amount, _pct(v.pct), v.favourable, line.budget_ytd,
                     line.actual_ytd, v.ytd_amount, _pct(v.ytd_pct), v.ytd_favourable, line.committed,
                     line.committed_ytd, v.remaining, line.budget_year, line.budget_year_original, v.revision,
                     v.forecast, v.forecast_variance, "owner" if v.revised else "budget", pack.state_of(v)])
    for block in pack.centres:
        r = block.rollup
        rows += [_sums_row("cost_centre", r.cost_centre, r.cost_centre_name, s, month)
                 for s in (r.expense, r.income, r.net) if s.lines or s is r.net]
    total = pack.total
    rows += [_sums_row("total", "", "", s, month) for s in (total.expense, total.income, total.net)]
    return rows


def build(pack: Contents) -> Pack:
    """The round's HTML, its PDF and the CSV, under reports/budget-variance/<month>/ (a new round keeps the old)."""
    folder = f"budget-variance/{pack.period.name}"
    html = save_report(f"{folder}/pack-r{pack.round}.html", f"{TEMPLATES}/report.html", {"pack": pack})
    pdf = save_pdf(f"{folder}/pack-r{pack.round}.pdf", html.path.read_text(encoding="utf-8"))
    table = csv_bytes(COLUMNS, figures(pack))
    csv = report_path(f"{folder}/figures-r{pack.round}.csv")
    csv.write_bytes(table)
    return Pack(html=html.path, pdf=pdf.path, csv=csv, html_sha256=html.sha256, pdf_sha256=pdf.sha256,
                csv_sha256=hashlib.sha256(table).hexdigest())


def _table(rollups: Sequence[rules.Rollup]) -> list[dict[str, Any]]:
    return [{"cost centre": f"{r.cost_centre} {r.cost_centre_name}", "expense budget YTD": str(r.expense.budget_ytd),
             "expense actual YTD": str(r.expense.actual_ytd), "variance YTD": str(r.expense.ytd_variance),
             "committed": str(r.expense.committed_ytd), "remaining": str(r.expense.remaining),
             "forecast": str(r.expense.forecast), "budget for the year": str(r.expense.budget_year)}
            for r in rollups]


def publish(pack: Contents, files: Pack) -> None:
    """The month's pack in the Prefect UI: a markdown summary and the cost centres' table, under stable keys."""
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    summary = render_page(f"{TEMPLATES}/summary.md", {"pack": pack, "files": files})
    create_markdown_artifact(summary, key=ARTIFACT_KEY,
                             description=f"Budget variance pack {pack.period.label}, round {pack.round}")
    create_table_artifact(_table([b.rollup for b in pack.centres]), key=f"{ARTIFACT_KEY}-cost-centres",
                          description=f"Expenses by cost centre, year to date {pack.period.label}")
