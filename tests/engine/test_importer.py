from __future__ import annotations

from pathlib import Path

import pytest
from sqlmodel import col, select
from typer.testing import CliRunner

import flows.supply.inventory_reorder.imports  # noqa: F401  (registers the import kinds)
import flows.supply.vendor_review.imports  # noqa: F401
from engine.cli import app
from engine.importer import ImportRefused, import_csv
from registry import AuditEvent, CostCentre, Delivery, InventoryItem, Person, Standing, Vendor, session, trail
from tests import factories

DEMO = Path(__file__).resolve().parents[2] / "demo"
HEADER = ["po_number", "line", "vendor_code", "sku", "promised_date", "delivered_date", "qty_ordered",
          "qty_received", "qty_rejected", "unit_price", "contracted_price"]


def _owners() -> None:
    with session() as db:
        people = [Person(name=name, email=f"{name.lower().replace(' ', '.')}@demo.example")
                  for name in ("Paula Procurement", "Fatima Facilities", "Ivan IT")]
        db.add_all(people)
        db.flush()
        for code in ("OPS", "FAC", "IT", "WH"):  # where the demo vendors are charged
            db.add(CostCentre(code=code, name=code, owner_id=people[0].id or 0))


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
    # Every process's kinds are known (the budget's and the risk register's sort around these).
    assert unknown.exit_code == 2 and "known: " in unknown.output and all(
        kind in unknown.output for kind in ("deliveries, inventory, kpi-measurements, kpis", "vendors", "actuals"))


def test_a_large_file_imports_in_one_transaction(registry_db: str, tmp_path: Path) -> None:
    with session() as db:
        vendor = factories.vendor(db, owner=factories.person(db))
        code = vendor.code
    header = ["sku", "location", "on_hand", "reorder_point", "reorder_qty", "unit_cost", "vendor_code"]
    rows: list[list[object]] = [[f"S{i}", "MAIN", i % 50, 20, 40, "1.25", code] for i in range(20_000)]
    result = CliRunner().invoke(app, ["import", "inventory", str(_write(tmp_path / "big.csv", rows, header))])
    assert result.exit_code == 0, result.output
    assert factories.count(InventoryItem) == 20_000


# --- every changed row leaves its before and after; what an approval governs is refused ---

VENDOR_HEADER = ["code", "name", "owner_email", "standing"]


def _trail(action: str) -> list[AuditEvent]:
    with session() as db:
        return list(db.exec(select(AuditEvent).where(AuditEvent.action == action).order_by(col(AuditEvent.id))))


def test_each_changed_row_records_its_fields_before_and_after(any_db: str, tmp_path: Path) -> None:
    with session() as db:
        code = factories.vendor(db, owner=factories.person(db)).code
    rows: list[list[object]] = [[f"PO{n}", 1, code, "S-1", "2026-08-01", "2026-08-02", 100, 100, 0, "4.00", "4.00"]
                                for n in range(5)]
    import_csv("deliveries", _write(tmp_path / "d.csv", rows))
    rows[1][8], rows[3][9] = 7, "4.50"
    report = import_csv("deliveries", _write(tmp_path / "d.csv", rows), actor="paula@demo.example")
    assert (report.updated, report.unchanged) == (2, 3)
    changed = _trail("import.row_changed")
    assert [(e.actor, e.entity_type, e.data["line"], e.data["key"], e.data["changes"]) for e in changed] == [
        ("paula@demo.example", "delivery", 3, {"po_number": "PO1", "line": 1},
         {"qty_rejected": {"before": 0, "after": 7}}),
        ("paula@demo.example", "delivery", 5, {"po_number": "PO3", "line": 1},
         {"unit_price": {"before": "4.0000", "after": "4.50"}}),
    ]
    with session() as db:
        assert {e.entity_id for e in changed} == {d.id for d in db.exec(select(Delivery)) if d.po_number in
                                                  ("PO1", "PO3")}
        assert trail.verify(db).ok


def test_an_import_cannot_change_a_vendors_standing(any_db: str, tmp_path: Path) -> None:
    with session() as db:
        owner = factories.person(db)
        vendor = factories.vendor(db, owner=owner, standing=Standing.probation)
        code, email, name = vendor.code, owner.email, vendor.name
    events = factories.count(AuditEvent)
    path = _write(tmp_path / "vendors.csv", [[code, f"{name} renamed", email, "preferred"]], VENDOR_HEADER)
    result = CliRunner().invoke(app, ["import", "vendors", str(path)])
    assert result.exit_code == 1
    assert "vendors.csv" in result.output and "line 2, column 'standing', value 'preferred'" in result.output
    assert f"vendor {code}: standing is probation and an import cannot change it" in result.output
    assert "vendor-review" in result.output and "procurement manager" in result.output
    with session() as db:
        stored = db.exec(select(Vendor).where(Vendor.code == code)).one()
    assert (stored.standing, stored.name) == (Standing.probation, name), "nothing of the file was written"
    assert factories.count(AuditEvent) == events


def test_a_vendor_file_without_a_standing_keeps_the_approved_one(registry_db: str, tmp_path: Path) -> None:
    with session() as db:
        owner = factories.person(db)
        vendor = factories.vendor(db, owner=owner, standing=Standing.disqualified)
        code, email = vendor.code, owner.email
    import_csv("vendors", _write(tmp_path / "v.csv", [[code, "Renamed", email]], VENDOR_HEADER[:3]))
    import_csv("vendors", _write(tmp_path / "w.csv", [[code, "Renamed again", email, ""]], VENDOR_HEADER))
    with session() as db:
        stored = db.exec(select(Vendor).where(Vendor.code == code)).one()
    assert (stored.standing, stored.name) == (Standing.disqualified, "Renamed again")
    assert [e.data["changes"] for e in _trail("import.row_changed")] == [
        {"name": {"before": f"Vendor {code[1:].lstrip('0')}", "after": "Renamed"}},
        {"name": {"before": "Renamed", "after": "Renamed again"}}]


def test_a_new_vendor_gets_its_initial_standing_from_the_file(registry_db: str, tmp_path: Path) -> None:
    with session() as db:
        email = factories.person(db).email
    import_csv("vendors", _write(tmp_path / "v.csv", [["NEW1", "Newco", email, "probation"]], VENDOR_HEADER))
    with session() as db:
        assert db.exec(select(Vendor).where(Vendor.code == "NEW1")).one().standing == Standing.probation


def test_only_changed_rows_of_a_large_file_leave_entries(registry_db: str, tmp_path: Path) -> None:
    with session() as db:
        code = factories.vendor(db, owner=factories.person(db)).code
    header = ["sku", "location", "on_hand", "reorder_point", "reorder_qty", "unit_cost", "vendor_code"]
    rows: list[list[object]] = [[f"S{i}", "MAIN", i % 50, 20, 40, "1.25", code] for i in range(20_000)]
    import_csv("inventory", _write(tmp_path / "big.csv", rows, header))
    for i in (10, 5000, 19_999):
        rows[i][2] = 999
    events = factories.count(AuditEvent)
    report = import_csv("inventory", _write(tmp_path / "big.csv", rows, header))
    assert report.updated == 3
    assert factories.count(AuditEvent) == events + 4, "one summary and one entry per changed row"
    assert [e.data["line"] for e in _trail("import.row_changed")] == [12, 5002, 20_001]


# --- a file in the wrong encoding or with a broken quote: file, line and what to do ---

def _refusal(path: Path, kind: str = "deliveries") -> str:
    result = CliRunner().invoke(app, ["import", kind, str(path)])
    assert result.exit_code == 1, result.output
    assert factories.count(Delivery) == 0 and factories.count(AuditEvent) == 0, "nothing was written"
    return result.output


def _delivery_lines(code: str) -> list[str]:
    return [",".join(HEADER)] + [f"PO{n},1,{code},S-{n},2026-08-01,2026-08-02,10,10,0,4.00,4.00" for n in range(4)]


def test_a_latin1_file_is_refused_naming_its_line_and_how_to_save_it(registry_db: str, tmp_path: Path) -> None:
    with session() as db:
        code = factories.vendor(db, owner=factories.person(db)).code
    lines = _delivery_lines(code)
    lines[3] = lines[3].replace("S-2", "S-Café")
    path = tmp_path / "deliveries-latin1.csv"
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode("latin-1"))
    output = _refusal(path)
    assert "deliveries-latin1.csv" in output and "line 4" in output
    assert "0xe9 is not UTF-8" in output and "save it as UTF-8" in output
    assert "codec can't decode" not in output


def test_an_unterminated_quote_is_refused_naming_where_it_opened(registry_db: str, tmp_path: Path) -> None:
    with session() as db:
        code = factories.vendor(db, owner=factories.person(db)).code
    lines = _delivery_lines(code)
    lines[2] = lines[2].replace("S-1", '"S-1')
    path = tmp_path / "quoted.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    output = _refusal(path)
    assert "quoted.csv" in output and "line 3" in output
    assert "close the quote opened on line 3" in output
    assert "Field required" not in output


def test_a_quote_closed_lines_later_says_which_lines_it_swallowed(registry_db: str, tmp_path: Path) -> None:
    with session() as db:
        code = factories.vendor(db, owner=factories.person(db)).code
    lines = _delivery_lines(code)
    lines[2] = lines[2].replace("S-1", '"S-1')
    lines[4] = lines[4].replace("S-3", 'S-3"')
    path = tmp_path / "swallowed.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    output = _refusal(path)
    assert "line 3, column 'sku'" in output and "runs from line 3 to line 5" in output
    assert "close the quote opened on line 3" in output


def test_a_utf8_file_with_a_byte_order_mark_and_quoted_line_breaks_imports(registry_db: str, tmp_path: Path) -> None:
    with session() as db:
        code = factories.vendor(db, owner=factories.person(db)).code
    header = ["sku", "location", "description", "on_hand", "reorder_point", "reorder_qty", "unit_cost", "vendor_code"]
    path = tmp_path / "excel.csv"
    path.write_bytes(b"\xef\xbb\xbf" + (",".join(header) + '\r\nS1,MAIN,"Caf\u00e9 filters,\r\nbox of 10",1,1,1,1.00,'
                                        + code + "\r\n").encode("utf-8"))
    assert import_csv("inventory", path).inserted == 1
    with session() as db:
        assert db.exec(select(InventoryItem)).one().description == "Café filters,\r\nbox of 10"


def test_a_problem_after_a_blank_line_names_its_own_line(registry_db: str, tmp_path: Path) -> None:
    with session() as db:
        code = factories.vendor(db, owner=factories.person(db)).code
    lines = _delivery_lines(code)
    lines[3] = lines[3].replace("2026-08-01", "2026-13-01")
    path = tmp_path / "gap.csv"
    path.write_text("\n".join(lines[:2] + [""] + lines[2:]) + "\n", encoding="utf-8")
    assert "line 5, column 'promised_date', value '2026-13-01'" in _refusal(path)
