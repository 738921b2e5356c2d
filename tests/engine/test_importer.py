from __future__ import annotations

from pathlib import Path

import pytest
from sqlmodel import select
from typer.testing import CliRunner

import flows.supply_data  # noqa: F401  (registers the import kinds)
from engine.cli import app
from engine.importer import ImportRefused, import_csv
from registry import AuditEvent, Delivery, InventoryItem, Person, Vendor, session
from tests import factories

DEMO = Path(__file__).resolve().parents[2] / "demo"
HEADER = ["po_number", "line", "vendor_code", "sku", "promised_date", "delivered_date", "qty_ordered",
          "qty_received", "qty_rejected", "unit_price", "contracted_price"]


def _owners() -> None:
    with session() as db:
        for name in ("Paula Procurement", "Fatima Facilities", "Ivan IT"):
            key = name.lower().replace(" ", ".")
            db.add(Person(name=name, email=f"{key}@demo.example"))


def _write(path: Path, rows: list[list[object]], header: list[str] = HEADER) -> Path:
    return factories.csv_file(path, header, rows)


def test_importing_the_same_files_twice_changes_nothing(any_db: str) -> None:
    _owners()
    first = [import_csv(kind, DEMO / f"{name}.csv") for kind, name in
             (("vendors", "vendors"), ("deliveries", "deliveries"), ("inventory", "inventory"))]
    assert [r.inserted for r in first] == [6, 51, 33]
    events = factories.count(AuditEvent)
    again = [import_csv(kind, DEMO / f"{name}.csv") for kind, name in
             (("vendors", "vendors"), ("deliveries", "deliveries"), ("inventory", "inventory"))]
    assert [(r.inserted, r.updated, r.unchanged) for r in again] == [(0, 0, 6), (0, 0, 51), (0, 0, 33)]
    assert factories.count(AuditEvent) == events, "an import that changes nothing leaves no trail entry"
    assert (factories.count(Vendor), factories.count(Delivery), factories.count(InventoryItem)) == (6, 51, 33)
    with session() as db:
        contact = db.exec(select(Person).where(Person.email == "orders@acme.example")).one()
        acme = db.exec(select(Vendor).where(Vendor.code == "ACME")).one()
    assert acme.contact_id == contact.id, "a vendor contact becomes a person messages can reach"


def test_a_changed_row_is_updated_in_place(registry_db: str, tmp_path: Path) -> None:
    with session() as db:
        owner = factories.person(db)
        vendor = factories.vendor(db, owner=owner)
        code = vendor.code
    row = ["PO1", 1, code, "S-1", "2026-08-01", "2026-08-02", 100, 100, 0, "4.00", "4.00"]
    import_csv("deliveries", _write(tmp_path / "d.csv", [row]))
    row[8] = 7
    report = import_csv("deliveries", _write(tmp_path / "d.csv", [row]))
    assert (report.inserted, report.updated) == (0, 1)
    with session() as db:
        assert db.exec(select(Delivery)).one().qty_rejected == 7


def test_a_bad_file_is_refused_whole_with_every_problem_listed(any_db: str) -> None:
    _owners()
    import_csv("vendors", DEMO / "vendors.csv")
    with pytest.raises(ImportRefused) as refused:
        import_csv("deliveries", DEMO / "broken_deliveries.csv")
    found = {(p.line, p.column, p.value) for p in refused.value.problems}
    assert found == {
        (3, "vendor_code", "NOPE"), (4, "promised_date", "2026-13-01"), (5, "qty_ordered", "-5"),
        (6, "qty_rejected", "60"), (7, "po_number, line", "PO50001 / 1"), (8, "unit_price", "four"),
    }
    assert all(p.why for p in refused.value.problems)
    assert factories.count(Delivery) == 0, "the good rows of a refused file are not imported either"


def test_a_refused_vendor_file_creates_no_contact_people(registry_db: str, tmp_path: Path) -> None:
    _owners()
    people = factories.count(Person)
    header = ["code", "name", "owner_email", "contact_email", "review_cadence"]
    rows = [["A1", "Alpha", "paula.procurement@demo.example", "new.contact@alpha.example", "0 7 1 * *"],
            ["B1", "Beta", "nobody@demo.example", "", "0 7 1 * *"],
            ["C1", "Gamma", "paula.procurement@demo.example", "", "every month"]]
    with pytest.raises(ImportRefused) as refused:
        import_csv("vendors", _write(tmp_path / "v.csv", rows, header))
    assert {(p.line, p.column) for p in refused.value.problems} == {(3, "owner_email"), (4, "review_cadence")}
    assert factories.count(Person) == people and factories.count(Vendor) == 0


def test_missing_and_unknown_columns_are_named(registry_db: str, tmp_path: Path) -> None:
    path = _write(tmp_path / "i.csv", [["S", "MAIN", 1]], ["sku", "location", "on_hand"])
    with pytest.raises(ImportRefused, match="reorder_point"):
        import_csv("inventory", path)
    path = _write(tmp_path / "j.csv", [["S", "MAIN", 1, 1, 1, "1.00", "V", "x"]],
                  ["sku", "location", "on_hand", "reorder_point", "reorder_qty", "unit_cost", "vendor_code", "colour"])
    with pytest.raises(ImportRefused, match="colour"):
        import_csv("inventory", path)


def test_the_command_reports_counts_and_refusals(registry_db: str, tmp_path: Path) -> None:
    _owners()
    runner = CliRunner()
    ok = runner.invoke(app, ["import", "vendors", str(DEMO / "vendors.csv")])
    assert ok.exit_code == 0 and "6 new, 0 updated, 0 unchanged" in ok.output
    bad = runner.invoke(app, ["import", "deliveries", str(DEMO / "broken_deliveries.csv")])
    assert bad.exit_code == 1 and "line 3, column 'vendor_code', value 'NOPE'" in bad.output
    unknown = runner.invoke(app, ["import", "spaceships", str(DEMO / "vendors.csv")])
    assert unknown.exit_code == 2 and "known: deliveries, inventory, kpi-measurements, kpis, vendors" in unknown.output


def test_a_large_file_imports_in_one_transaction(registry_db: str, tmp_path: Path) -> None:
    with session() as db:
        vendor = factories.vendor(db, owner=factories.person(db))
        code = vendor.code
    header = ["sku", "location", "on_hand", "reorder_point", "reorder_qty", "unit_cost", "vendor_code"]
    rows: list[list[object]] = [[f"S{i}", "MAIN", i % 50, 20, 40, "1.25", code] for i in range(20_000)]
    result = CliRunner().invoke(app, ["import", "inventory", str(_write(tmp_path / "big.csv", rows, header))])
    assert result.exit_code == 0, result.output
    assert factories.count(InventoryItem) == 20_000
