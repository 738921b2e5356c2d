"""Sections a process declares (engine.processes.Section) appear in the operations report after its own: in the
HTML, the PDF and the CSV, built by the process for the report's period, without the report importing it."""

from __future__ import annotations

import csv
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from jinja2 import ChoiceLoader, FileSystemLoader
from pypdf import PdfReader
from sqlmodel import Session, col, func, select

from engine import processes
from engine.periods import Period
from engine.processes import DeclarationProblem, Process, Section
from engine.templates import environment
from flows.reporting.operations_report.flow import operations_report
from flows.reporting.operations_report.rules import DISTRIBUTION_ROLE
from registry import Direction, KpiDefinition, KpiMeasurement, session
from tests import factories
from tests.conftest import Mailbox

PARTIAL = """<p class="boilers">{{ section.serviced }} boiler services from {{ period.start.isoformat() }}, \
costing {{ section.cost | money }}</p>"""


def _boiler_services(db: Session, period: Period) -> dict[str, Any] | None:
    """The test process's section: its "services" are the BOILER KPI's measurements in the period."""
    in_period = (col(KpiMeasurement.measured_on) >= period.start, col(KpiMeasurement.measured_on) <= period.end)
    count, total = db.exec(select(func.count(), func.sum(KpiMeasurement.value)).join(
        KpiDefinition, col(KpiDefinition.id) == KpiMeasurement.kpi_id).where(
        KpiDefinition.code == "BOILER", *in_period)).one()
    if not count:
        return None
    cost = Decimal(str(total)).quantize(Decimal("0.01"))
    return {"serviced": count, "cost": cost, "figures": [("services", count), ("cost", cost, "EUR")]}


def _broken(db: Session, period: Period) -> dict[str, Any] | None:
    raise RuntimeError("the test section's query failed")


def _declare(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, *sections: Section) -> None:
    """A process of the test's own declaring `sections`, its partial in a templates folder of the test's own."""
    (tmp_path / "maintenance" / "boilers").mkdir(parents=True)
    (tmp_path / "maintenance" / "boilers" / "report_section.html").write_text(PARTIAL)
    env = environment()
    monkeypatch.setattr(env, "loader", ChoiceLoader([env.loader, FileSystemLoader(tmp_path)]))  # type: ignore[list-item]
    declared = Process(name="boiler-service", title="Boiler service", actor="boiler-service", sections=sections)
    monkeypatch.setattr(processes, "discover", lambda: {declared.name: declared})


def _rows(path: str) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _pdf_text(path: str) -> str:
    return " ".join(page.extract_text() for page in PdfReader(path).pages)


def _measure(values: dict[str, float]) -> None:
    with session() as db:
        kpi = KpiDefinition(code="BOILER", name="Boiler service cost", unit="EUR", target=0,
                            direction=Direction.lower_is_better)
        db.add(kpi)
        db.flush()
        db.add_all(KpiMeasurement(kpi_id=kpi.id or 0, measured_on=date.fromisoformat(day), value=value)
                   for day, value in values.items())


def test_a_process_section_is_rendered_after_the_reports_own_in_html_pdf_csv_and_mail(
        prefect_api: str, registry_db: str, smtp: Mailbox, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _declare(monkeypatch, tmp_path,
             Section("boilers", "Boiler services", "maintenance/boilers/report_section.html", _boiler_services),
             Section("boiler-faults", "Boiler faults", "maintenance/boilers/report_section.html", _broken))
    _measure({"2026-09-30": 900.0, "2026-10-03": 400.25, "2026-10-29": 850.25})
    with session() as db:
        reader = factories.person(db, "Rita Reader")
        reader.roles = [DISTRIBUTION_ROLE]
        db.add(reader)

    outcome = operations_report(period="2026-10")

    html = Path(outcome.html).read_text(encoding="utf-8")
    assert html.index("6 · Obligations") < html.index("7 · Boiler services") < html.index("8 · Boiler faults")
    assert '<p class="boilers">2 boiler services from 2026-10-01, costing' in html, "the period's, not September's"
    text = _pdf_text(outcome.pdf)
    assert "7 · Boiler services" in text and "2 boiler services from 2026-10-01" in text and "1,250.50" in text
    assert "could not be built for October 2026" in text, "a failing section says so; the rest is reported"
    rows = [(r["section"], r["item"], r["value"], r["unit"], r["status"]) for r in _rows(outcome.csv)
            if r["section"] in ("boilers", "boiler-faults")]
    assert rows == [("boilers", "services", "2", "", ""), ("boilers", "cost", "1250.50", "EUR", ""),
                    ("boiler-faults", "Boiler faults", "", "", "failed")]
    [mail] = smtp.wait_for(1, to=reader.email)
    assert "Also in the report: Boiler services; Boiler faults." in mail.text
    assert "Also in the report: Boiler services; Boiler faults." in mail.html


def test_a_section_without_data_for_the_period_says_so(
        prefect_api: str, registry_db: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _declare(monkeypatch, tmp_path,
             Section("boilers", "Boiler services", "maintenance/boilers/report_section.html", _boiler_services))
    _measure({"2026-09-30": 900.0})

    outcome = operations_report(period="2026-10", send=False)

    assert "No boiler services data for October 2026." in _pdf_text(outcome.pdf)
    assert 'class="boilers"' not in Path(outcome.html).read_text(encoding="utf-8")
    assert [(r["item"], r["status"]) for r in _rows(outcome.csv) if r["section"] == "boilers"] == [
        ("Boiler services", "no data")]


def test_a_section_named_as_one_of_the_reports_own_is_refused(
        prefect_api: str, registry_db: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _declare(monkeypatch, tmp_path,
             Section("kpis", "Boiler KPIs", "maintenance/boilers/report_section.html", _boiler_services))
    with pytest.raises(DeclarationProblem, match="kpis"):
        operations_report(period="2026-10", send=False)


def test_discovery_refuses_one_section_key_declared_twice() -> None:
    section = Section("boilers", "Boiler services", "maintenance/boilers/report_section.html", _boiler_services)
    first = Process(name="boiler-service", title="Boiler service", actor="boiler-service", sections=(section,))
    second = Process(name="boiler-audit", title="Boiler audit", actor="boiler-audit", sections=(section,))
    with pytest.raises(DeclarationProblem, match="'boilers' is declared by both boiler-service and boiler-audit"):
        processes.check_declarations([first, second])
    processes.check_declarations([first])
