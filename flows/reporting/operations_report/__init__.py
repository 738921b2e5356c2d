"""The operations report: KPIs against target, findings, answer times, vendors, stock and what falls due."""

from engine.processes import Process
from flows.reporting.operations_report.imports import KPI_MEASUREMENTS, KPIS

PROCESS = Process(name="operations-report", title="Operations report", actor="operations-report",
                  imports=(KPIS, KPI_MEASUREMENTS))
