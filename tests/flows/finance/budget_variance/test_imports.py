from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest
from sqlmodel import col, select

from engine import importer
from engine.importer import ImportRefused, import_csv
from flows.finance.budget_variance.imports import ACTUALS, BUDGET_LINES, COST_CENTRES
from flows.finance.budget_variance.ledger import figures
from flows.finance.budget_variance.rules import material, variance
from registry import Actual, AuditEvent, BudgetLine, CostCentre, LineKind, Person, session
from tests import factories as f
from tests.factories import count, csv_file

CENTRES = ["code", "name", "owner_email", "manager_email", "active"]
LINES = ["cost_centre_code", "account", "month", "version", "kind", "amount"]
BOOKINGS = ["cost_centre_code", "account", "booked_on", "amount", "reference"]


@pytest.fixture(autouse=True)
def _kinds(monkeypatch: pytest.MonkeyPatch) -> None:
    """The kinds as the process declaring them registers them, for this test only (the list of known kinds
    other tests see stays as it was)."""
    for kind in (COST_CENTRES, BUDGET_LINES, ACTUALS):
        monkeypatch.setitem(importer._KINDS, kind.name, kind)


def _people() -> tuple[str, str]:
    with session() as db:
        boss = f.person(db, "Bea Boss")
        owner = f.person(db, "Otto Owner", manager=boss)
        return owner.email, boss.email


def _centres(tmp_path: Path, owner: str, boss: str) -> Path:
    return csv_file(tmp_path / "centres.csv", CENTRES, [
        ["OPS", "Operations", owner, "", "true"], ["SAL", "Sales", owner.upper(), boss, ""]])


def test_cost_centres_budgets_and_actuals_import_and_the_same_files_again_change_nothing(
        any_db: str, tmp_path: Path) -> None:
    owner, boss = _people()
    centres = _centres(tmp_path, owner, boss)
    lines = csv_file(tmp_path / "budget.csv", LINES, [
        *(["OPS", "6000", f"2026-{m:02d}", "", "", "1000.00"] for m in range(1, 13)),
        *(["SAL", "4000", f"2026-{m:02d}-01", "1", "Income", "5000"] for m in range(1, 13))])
    booked = csv_file(tmp_path / "actuals.csv", BOOKINGS, [
        ["OPS", "6000", "2026-11-03", "1250.50", "INV-1"], ["OPS", "6000", "2026-11-20", "-50.50", "CN-1"],
        ["SAL", "4000", "2026-11-28", "4100", "INV-1"]])  # the same document number in another cost centre

    reports = [import_csv(kind, path) for kind, path in (
        ("cost-centres", centres), ("budget-lines", lines), ("actuals", booked))]
    assert [(r.inserted, r.updated) for r in reports] == [(2, 0), (24, 0), (3, 0)]
    with session() as db:
        by_code = {c.code: c for c in db.exec(select(CostCentre))}
        owner_id = db.exec(select(Person.id).where(Person.email == owner)).one()
        kinds = set(db.exec(select(BudgetLine.kind).where(BudgetLine.cost_centre_id == by_code["SAL"].id)))
        november = {(line.cost_centre, line.account): line for line in figures(db, date(2026, 11, 1))}
    assert (by_code["OPS"].owner_id, by_code["OPS"].manager_id, by_code["OPS"].active) == (owner_id, None, True)
    assert by_code["SAL"].owner_id == owner_id and by_code["SAL"].manager_id is not None
    assert kinds == {LineKind.income}
    assert (november["OPS", "6000"].budget, november["OPS", "6000"].actual) == (Decimal("1000.00"),
                                                                              Decimal("1200.00"))
    assert (november["SAL", "4000"].kind, november["SAL", "4000"].actual) == ("income", Decimal("4100.00"))

    trail_before = count(AuditEvent)
    again = [import_csv(kind, path) for kind, path in (
        ("cost-centres", centres), ("budget-lines", lines), ("actuals", booked))]
    assert [(r.inserted, r.updated, r.unchanged) for r in again] == [(0, 0, 2), (0, 0, 24), (0, 0, 3)]
    assert count(AuditEvent) == trail_before, "nothing changed, nothing recorded"


def test_a_revision_is_a_new_version_and_the_original_stays(registry_db: str, tmp_path: Path) -> None:
    owner, boss = _people()
    import_csv("cost-centres", _centres(tmp_path, owner, boss))
    import_csv("budget-lines", csv_file(tmp_path / "original.csv", LINES, [
        ["OPS", "6000", f"2026-{m:02d}", "1", "expense", "1000"] for m in range(1, 13)]))
    revision = import_csv("budget-lines", csv_file(tmp_path / "revision.csv", LINES, [
        ["OPS", "6000", f"2026-{m:02d}", "2", "expense", "1500"] for m in range(7, 13)]))
    assert (revision.inserted, revision.updated) == (6, 0)
    with session() as db:
        july = db.exec(select(col(BudgetLine.version), col(BudgetLine.amount))
                       .where(BudgetLine.month == date(2026, 7, 1)).order_by(col(BudgetLine.version))).all()
        [line] = figures(db, date(2026, 11, 1))
    assert july == [(1, Decimal("1000.00")), (2, Decimal("1500.00"))]
    assert (line.budget, line.budget_year, line.budget_year_original) == (
        Decimal("1500.00"), Decimal("15000.00"), Decimal("12000.00"))

    with pytest.raises(ImportRefused) as refused:  # the original changed in place: refused, whole
        import_csv("budget-lines", csv_file(tmp_path / "rewritten.csv", LINES, [
            ["OPS", "6000", "2026-01", "1", "expense", "1000"],  # as stored: fine
            ["OPS", "6000", "2026-02", "1", "expense", "900"],
            ["OPS", "6000", "2026-07", "2", "income", "1500"],
            ["OPS", "6100", "2026-01", "1", "expense", "100"]]))  # new, but the file is refused whole
    problems = {(p.line, p.column): p.why for p in refused.value.problems}
    assert set(problems) == {(3, "amount"), (4, "kind")}
    assert "OPS 6000 2026-02 version 1 is stored as 1000.00" in problems[3, "amount"]
    assert "import the revision as version 2" in problems[3, "amount"]
    assert count(BudgetLine) == 18


def test_bad_rows_refuse_the_whole_file_each_named(registry_db: str, tmp_path: Path) -> None:
    owner, boss = _people()
    with pytest.raises(ImportRefused) as refused:
        import_csv("cost-centres", csv_file(tmp_path / "c.csv", CENTRES, [
            ["OPS", "Operations", owner, "", ""], ["IT", "IT", "nobody@test.example", "", ""],
            ["HR", "People", owner, "ghost@test.example", ""], ["FIN", "", owner, "", ""],
            ["OPS", "Operations again", owner, "", ""]]))
    assert {(p.line, p.column) for p in refused.value.problems} == {
        (3, "owner_email"), (4, "manager_email"), (5, "name"), (6, "code")}
    assert count(CostCentre) == 0

    import_csv("cost-centres", _centres(tmp_path, owner, boss))
    with pytest.raises(ImportRefused) as refused:
        import_csv("budget-lines", csv_file(tmp_path / "b.csv", LINES, [
            ["OPS", "6000", "2026-01", "1", "expense", "1000"],
            ["NOPE", "6000", "2026-01", "1", "expense", "1000"],
            ["OPS", "6000", "2026-13", "1", "expense", "1000"],
            ["OPS", "6000", "2026-03-15", "1", "expense", "1000"],
            ["OPS", "6000", "2026-04", "0", "expense", "1000"],
            ["OPS", "6000", "2026-05", "1", "cost", "1000"],
            ["OPS", "6000", "2026-06", "1", "expense", "12.345"],
            ["OPS", "6000", "2026-01", "1", "expense", "1000"],
            ["OPS", "", "2026-07", "1", "expense", "10"]]))
    problems = {(p.line, p.column): p.why for p in refused.value.problems}
    assert set(problems) == {(3, "cost_centre_code"), (4, "month"), (5, "month"), (6, "version"), (7, "kind"),
                             (8, "amount"), (9, "cost_centre_id, account, month, version"), (10, "account")}
    assert "write 2026-03" in problems[5, "month"] and "import cost centres first" in problems[3, "cost_centre_code"]
    assert "same key as line 2" in problems[9, "cost_centre_id, account, month, version"]
    assert count(BudgetLine) == 0

    with pytest.raises(ImportRefused) as refused:
        import_csv("actuals", csv_file(tmp_path / "a.csv", BOOKINGS, [
            ["OPS", "6000", "2026-11-03", "100", "INV-1"], ["OPS", "6000", "2026-11-31", "100", "INV-2"],
            ["OPS", "6000", "2026-11-03", "ten", "INV-3"], ["OPS", "6000", "2026-11-03", "10", ""],
            ["XX", "6000", "2026-11-03", "10", "INV-4"]]))
    assert {(p.line, p.column) for p in refused.value.problems} == {
        (3, "booked_on"), (4, "amount"), (5, "reference"), (6, "cost_centre_code")}
    assert count(Actual) == 0


def test_a_corrected_booking_replaces_the_amount_of_its_reference(registry_db: str, tmp_path: Path) -> None:
    owner, boss = _people()
    import_csv("cost-centres", _centres(tmp_path, owner, boss))
    path = tmp_path / "actuals.csv"
    import_csv("actuals", csv_file(path, BOOKINGS, [["OPS", "6000", "2026-11-03", "100", "INV-1"]]))
    report = import_csv("actuals", csv_file(path, BOOKINGS, [["OPS", "6000", "2026-11-04", "110", "INV-1"],
                                                            ["OPS", "6100", "2026-11-04", "5", "INV-1"]]))
    assert (report.inserted, report.updated) == (1, 1)
    with session() as db:
        booked = db.exec(select(col(Actual.account), col(Actual.booked_on), col(Actual.amount))
                         .order_by(col(Actual.account))).all()
    assert booked == [("6000", date(2026, 11, 4), Decimal("110.00")), ("6100", date(2026, 11, 4), Decimal("5.00"))]


DEMO = Path(__file__).resolve().parents[4] / "demo"


def test_the_demo_year_has_four_material_overspends_in_november_and_one_mid_year_revision(registry_db: str) -> None:
    from registry.demo import seed

    with session() as db:
        seed(db)
    reports = [import_csv(kind, DEMO / name) for kind, name in (
        ("cost-centres", "cost_centres.csv"), ("budget-lines", "budget_lines.csv"), ("actuals", "actuals.csv"))]
    assert [r.inserted for r in reports] == [6, 204, 341]
    with session() as db:
        centres = db.exec(select(CostCentre)).all()
        owners = {p.id: p for p in db.exec(select(Person).where(col(Person.id).in_([c.owner_id for c in centres])))}
        revised = set(db.exec(select(col(BudgetLine.month)).where(BudgetLine.version == 2)))
        months = {n: [variance(line) for line in figures(db, date(2026, n, 1))] for n in range(1, 13)}
    assert len(centres) == 6 and all(owners[c.owner_id].manager_id for c in centres), "every owner has a manager"
    assert revised == {date(2026, m, 1) for m in range(7, 13)}
    november = {(v.line.cost_centre, v.line.account) for v in months[11] if material(v, 10, 1000)}
    assert november == {("IT", "6310"), ("FAC", "6110"), ("WH", "5210"), ("SAL", "4000")}
    assert all(not material(v, 10, 1000) for n in range(1, 11) for v in months[n]), "only November's are material"
    assert all(v.line.actual == 0 for v in months[12]), "December is not booked yet"
    hosting = next(v for v in months[11] if (v.line.cost_centre, v.line.account) == ("IT", "6310"))
    assert (hosting.line.budget, hosting.line.budget_year_original, hosting.revision) == (
        Decimal("4800.00"), Decimal("48000.00"), Decimal("4800.00"))


def test_a_vendor_file_charges_each_vendor_to_a_cost_centre_and_account(registry_db: str, tmp_path: Path) -> None:
    import flows.supply.vendor_review.imports  # noqa: F401  (registers the vendors kind)
    from registry import Vendor

    owner, boss = _people()
    import_csv("cost-centres", _centres(tmp_path, owner, boss))
    header = ["code", "name", "owner_email", "cost_centre_code", "account"]
    import_csv("vendors", csv_file(tmp_path / "v.csv", header, [["ACME", "Acme", owner, "OPS", "5100"],
                                                                 ["ZED", "Zed", owner, "", ""]]))
    with session() as db:
        charged = {v.code: (v.cost_centre_id, v.account) for v in db.exec(select(Vendor))}
        ops = db.exec(select(CostCentre.id).where(CostCentre.code == "OPS")).one()
    assert charged == {"ACME": (ops, "5100"), "ZED": (None, "")}
    with pytest.raises(ImportRefused) as refused:
        import_csv("vendors", csv_file(tmp_path / "w.csv", header, [["ACME", "Acme", owner, "NOPE", "5100"]]))
    assert [(p.line, p.column, p.value) for p in refused.value.problems] == [(2, "cost_centre_code", "NOPE")]
