"""The operations report: KPIs against target, findings by age, latency, vendors, stock, obligations due."""

from __future__ import annotations

import time
from datetime import date
from typing import Any, Literal

from prefect import get_run_logger
from prefect.runtime import flow_run
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from engine import periods, runs
from engine.settings import get_settings
from flows.reporting.operations_report import rules
from flows.reporting.operations_report.tasks import (
    contributed_sections,
    findings_section,
    inventory_section,
    kpi_section,
    latency_section,
    obligations_section,
    publish,
    record,
    render,
    send,
    vendor_section,
)
from registry.clock import utcnow


class ReportParameters(BaseModel):
    model_config = ConfigDict(extra="forbid")  # an unknown parameter is refused, not silently ignored
    period: Literal["last-week", "this-week", "last-month", "this-month", "last-quarter", "this-quarter"] = Field(
        "last-month", title="Period",
        description="Counted from the run's scheduled day. A given period below takes its place.")
    given_period: str = Field(
        "", title="Or a given period", pattern=rf"^$|{periods.PATTERN}",
        description="A month (2026-11), an ISO week (2026-W47), a quarter (2026-Q4) or a range of days "
                    "(2026-01-01..2026-03-31). Empty: the period above.",
    )
    send: bool = Field(
        True, title="E-mail the distribution list",
        description="Send the report (PDF attached) to every active person with the operations_report role. "
                    "Each person receives a period's report once, however often it is rebuilt.",
    )

    @model_validator(mode="before")
    @classmethod
    def _a_given_period_as_period(cls, values: Any) -> Any:
        """`period=2026-11` (as `ops run` or a schedule may say it) is a given period."""
        if isinstance(values, dict) and isinstance(given := values.get("period"), str) \
                and periods.normalize(given) not in periods.RELATIVE:
            return {**values, "period": "last-month", "given_period": values.get("given_period") or given}
        return values

    @field_validator("period", "given_period", mode="before")
    @classmethod
    def _a_period(cls, value: Any) -> Any:
        if not isinstance(value, str) or not value.strip():
            return "" if isinstance(value, str) else value
        periods.parse(value, periods.today())  # the form is all that is checked here; the run resolves it
        return periods.normalize(value)

    @property
    def asked(self) -> str:
        """The period the run reports: the given one, else the relative one."""
        return self.given_period or self.period


class ReportOutcome(BaseModel):
    key: str
    period: str
    first_day: date
    last_day: date
    html: str
    pdf: str
    csv: str
    pdf_sha256: str
    kpis: int
    kpis_met: int
    recipients: int
    sent: int
    seconds: float


@runs.process_flow("operations-report")
def operations_report(params: ReportParameters) -> ReportOutcome:
    """Operations report for a week, a month, a quarter or any range of days.

    KPIs against their targets (the period's mean, the previous period, trend and a year of history as charts),
    open findings and corrective actions by age, how long approvals and requests took to be answered, vendor
    standings, inventory health, and every obligation falling due in the next 30 days: what each process puts
    on the calendar (control tests, vendor reviews and contract ends, plan reviews, drills) and the corrective
    actions their owners still owe. Findings and actions are counted by their status: open, overdue, awaiting
    verification, and closed or verified in the period. Writes an HTML report, its
    PDF and a CSV of every figure under reports/operations/<period>/, shows the summary and KPI table as
    artifacts, and e-mails the PDF to everyone with the operations_report role, once per period however often
    the report is rebuilt. Every process adds its own sections after these (its budget, its risks), built by the
    process for the period and in the CSV too. A section without data says so.
    """
    began = time.perf_counter()
    logger = get_run_logger()
    tz = get_settings().timezone
    period = periods.parse(params.asked, periods.today(at=flow_run.get_scheduled_start_time(), tz=tz))
    now = utcnow()
    findings = findings_section(now, period, tz)
    health, shortages = inventory_section()
    sections = rules.Sections(kpis=kpi_section(period), ages=findings.ages, oldest=findings.oldest,
                              resolution=findings.resolution,
                              latency=latency_section(period, tz), vendors=vendor_section(), inventory=health,
                              shortages=shortages, obligations=obligations_section(now))
    top = rules.headline(sections, period_over=periods.today(at=now, tz=tz) > period.end)
    contributed = contributed_sections(period)
    files = render(period, sections, top, now, tz, contributed)
    record(period, files, now, tz)
    built = time.perf_counter() - began
    publish(period, sections, top, files, built)
    recipients, sent = send(period, sections, top, files, contributed) if params.send else (0, 0)
    logger.info("Operations report %s built in %.2f s: %s of %s KPIs met; sent to %s of %s on the list",
                period.key, built, top.kpis_met, top.kpis, sent, recipients)
    return ReportOutcome(key=period.key, period=period.label, first_day=period.start, last_day=period.end,
                         html=files["html"], pdf=files["pdf"], csv=files["csv"], pdf_sha256=files["pdf_sha256"],
                         kpis=top.kpis, kpis_met=top.kpis_met, recipients=recipients, sent=sent,
                         seconds=round(time.perf_counter() - began, 3))
