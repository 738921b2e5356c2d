from __future__ import annotations

import os
from datetime import date
from pathlib import Path

import pytest
from sqlmodel import col, func, select
from typer.testing import CliRunner

import flows.reporting.operations_report  # noqa: F401  (registers the import kinds)
from engine.cli import app
from engine.importer import ImportRefused, import_csv
from engine.settings import get_settings
from engine.stack import local_environment
from registry import Direction, KpiDefinition, KpiMeasurement, Person, Vendor, session
from registry.demo import seed
from tests.factories import count, csv_file

DEMO = Path(__file__).resolve().parents[4] / "demo"


def _demo_people() -> None:
    with session() as db:
        seed(db)


def test_the_demo_kpis_import_with_owners_and_a_year_of_weekly_measurements(registry_db: str) -> None:
    _demo_people()
    kpis = import_csv("kpis", DEMO / "kpis.csv")
    measurements = import_csv("kpi-measurements", DEMO / "kpi_measurements.csv")
    assert (kpis.inserted, measurements.inserted) == (7, 364)
    with session() as db:
        otd = db.exec(select(KpiDefinition).where(KpiDefinition.code == "OTD")).one()
        owner = db.get(Person, otd.owner_id)
        assert owner is not None and owner.name == "Paula Procurement"
        assert (otd.unit, otd.target, otd.direction) == ("%", 95.0, Direction.higher_is_better)
        days = sorted(db.exec(select(KpiMeasurement.measured_on).where(KpiMeasurement.kpi_id == otd.id)))
    assert len(days) == 52 and days[-1] == date(2026, 11, 22) and days[0] == date(2025, 11, 30)
    assert {(b - a).days for a, b in zip(days, days[1:], strict=False)} == {7}

    again = import_csv("kpi-measurements", DEMO / "kpi_measurements.csv")
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, 364)
    assert import_csv("kpis", DEMO / "kpis.csv").unchanged == 7


def test_a_corrected_measurement_replaces_the_old_value(registry_db: str, tmp_path: Path) -> None:
    header = ["code", "name", "unit", "target", "direction"]
    import_csv("kpis", csv_file(tmp_path / "k.csv", header, [["IRT", "Incident response", "h", 4, "Lower"]]))
    path = tmp_path / "m.csv"
    import_csv("kpi-measurements", csv_file(path, ["kpi_code", "measured_on", "value"], [["IRT", "2026-11-22", 5.3]]))
    report = import_csv("kpi-measurements", csv_file(path, ["kpi_code", "measured_on", "value", "note"],
                                                   [["IRT", "2026-11-22", 4.1, "recounted"]]))
    assert (report.inserted, report.updated) == (0, 1)
    with session() as db:
        [measurement] = db.exec(select(KpiMeasurement))
        kpi = db.exec(select(KpiDefinition)).one()
    assert (measurement.value, measurement.note) == (4.1, "recounted")
    assert kpi.direction == Direction.lower_is_better and kpi.owner_id is None


def test_bad_rows_refuse_the_whole_file_each_named(registry_db: str, tmp_path: Path) -> None:
    _demo_people()
    header = ["code", "name", "unit", "target", "direction", "owner_email"]
    with pytest.raises(ImportRefused) as refused:
        import_csv("kpis", csv_file(tmp_path / "k.csv", header, [
            ["OK", "Fine", "%", 90, "higher", "dora.director@demo.example"],
            ["DIR", "Sideways", "%", 90, "sideways", ""],
            ["OWN", "Nobody's", "%", 90, "higher", "nobody@demo.example"],
            ["TGT", "No target", "%", "ninety", "higher", ""]]))
    assert {(p.line, p.column) for p in refused.value.problems} == {(3, "direction"), (4, "owner_email"),
                                                                    (5, "target")}
    assert count(KpiDefinition) == 0

    import_csv("kpis", DEMO / "kpis.csv")
    with pytest.raises(ImportRefused) as refused:
        import_csv("kpi-measurements", csv_file(tmp_path / "m.csv", ["kpi_code", "measured_on", "value"], [
            ["OTD", "2026-11-29", 95.5], ["NOPE", "2026-11-29", 1], ["OTD", "2026-11-31", 95],
            ["OTD", "2026-11-29", 96]]))
    problems = {(p.line, p.column): p.why for p in refused.value.problems}
    assert set(problems) == {(3, "kpi_code"), (4, "measured_on"), (5, "kpi_id, measured_on")}
    assert "import the KPI definitions first" in problems[(3, "kpi_code")]
    assert "same key as line 2" in problems[(5, "kpi_id, measured_on")]
    assert count(KpiMeasurement) == 0


def _keep_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """`ops` commands fill in the local stack's variables where unset; unset them again after the test."""
    for key in local_environment(get_settings()):
        if key not in os.environ:
            monkeypatch.setenv(key, "")  # recorded as absent before, so teardown removes what `ops` sets
            monkeypatch.delenv(key)


def test_ops_init_imports_the_demo_kpis_once_and_ops_import_takes_kpi_files(
        registry_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _keep_environment(monkeypatch)
    runner = CliRunner()
    first = runner.invoke(app, ["init"])
    assert first.exit_code == 0, first.output
    assert "demo kpis: 7 imported" in first.output and "demo kpi-measurements: 364 imported" in first.output
    assert (count(Vendor), count(KpiDefinition), count(KpiMeasurement)) == (6, 7, 364)
    with session() as db:  # staff retire a KPI; a later start must not bring it back
        retired = db.exec(select(KpiDefinition).where(KpiDefinition.code == "SAFE")).one()
        retired.active = False
        db.add(retired)
    second = runner.invoke(app, ["init"])
    assert second.exit_code == 0 and "demo kpi" not in second.output
    with session() as db:
        assert not db.exec(select(KpiDefinition.active).where(KpiDefinition.code == "SAFE")).one()
        assert db.exec(select(func.count()).select_from(KpiMeasurement)
                       .where(col(KpiMeasurement.value) >= 0)).one() == 364

    path = csv_file(tmp_path / "m.csv", ["kpi_code", "measured_on", "value"], [["OTD", "2026-11-29", 95.5]])
    imported = runner.invoke(app, ["import", "kpi-measurements", str(path)])
    assert imported.exit_code == 0 and "1 new, 0 updated, 0 unchanged" in imported.output
