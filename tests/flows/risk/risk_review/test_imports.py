"""The risk register from CSV through engine.importer.import_csv: refused whole naming every bad row, upserted by
code, the same file twice changing nothing; a new risk's links, first assessment and next review written with it."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlmodel import Session, select

from engine.importer import ImportRefused, import_csv, register_kind
from flows.risk.risk_review import imports
from registry import (
    Control,
    KpiDefinition,
    Risk,
    RiskAssessment,
    RiskCategory,
    RiskControl,
    RiskIndicator,
    RiskLevel,
    RiskMatrix,
    Treatment,
    session,
)
from registry.kpis import Direction
from tests import factories

RISK_HEADER = ["code", "title", "category", "owner_email", "cause", "event", "consequence", "matrix",
               "inherent_likelihood", "inherent_impact", "residual_likelihood", "residual_impact", "treatment",
               "treatment_plan", "controls", "kri", "last_reviewed"]


@pytest.fixture(autouse=True)
def _kinds() -> None:
    # Declared by the risk-review process (PROCESS.imports); registered here so the test needs no discovery.
    register_kind(imports.RISK_CATEGORIES)
    register_kind(imports.RISKS)


def _organisation() -> dict[str, str]:
    with session() as db:
        owner, other = factories.person(db, "Rita Risk"), factories.person(db, "Omar Owner")
        framework = factories.framework(db, manager=owner, owners=[owner, other])
        second = factories.framework(db, manager=owner, owners=[owner])  # its C-1 makes "C-1" ambiguous
        db.add_all([KpiDefinition(code="OTD", name="On-time delivery", unit="%", target=95,
                                  direction=Direction.higher_is_better),
                    KpiDefinition(code="IRT", name="Incident response", unit="h", target=4,
                                  direction=Direction.lower_is_better)])
        return {"owner": owner.email, "other": other.email, "framework": framework.name, "second": second.name}


def _categories(tmp_path: Path) -> None:
    import_csv("risk-categories", factories.csv_file(tmp_path / "categories.csv", ["code", "name", "appetite"], [
        ("OPS", "Operational", "Medium"), ("CYB", "Cyber security", "High")]))


def _register(tmp_path: Path, people: dict[str, str], name: str = "risks.csv") -> Path:
    fw = people["framework"]
    return factories.csv_file(tmp_path / name, RISK_HEADER, [
        ("R-1", "Ransomware encrypts the file servers", "CYB", people["owner"], "Phishing", "Encryption",
         "Two days without files", "", "5", "5", "4", "5", "reduce", "EDR everywhere", f"{fw}/C-1;C-2",
         "IRT>8;OTD<90", "2026-09-15"),
        ("R-2", "Warehouse flood", "OPS", people["other"], "River", "Flood", "Stock lost", "5x5",
         "Unlikely", "Severe", "rare", "severe", "Transfer", "Insured", "", "", ""),
        ("R-3", "Key supplier fails", "OPS", people["other"], "", "", "", "", "3", "3", "2", "2", "accept", "",
         "C-2", "OTD<85", "2026-11-20"),
    ])


def test_a_register_imports_with_its_links_first_assessments_and_next_reviews(any_db: str, tmp_path: Path) -> None:
    people = _organisation()
    _categories(tmp_path)
    report = import_csv("risks", _register(tmp_path, people))
    assert (report.inserted, report.updated, report.unchanged) == (3, 0, 0)
    with session() as db:
        risks = {r.code: r for r in db.exec(select(Risk))}
        r1, r2, r3 = risks["R-1"], risks["R-2"], risks["R-3"]
        i1, i3 = r1.id or 0, r3.id or 0
        assert (r2.inherent_likelihood, r2.inherent_impact, r2.residual_likelihood, r2.residual_impact) == (2, 5, 1, 5)
        assert (r2.treatment, r3.treatment, r1.treatment_plan) == (Treatment.transfer, Treatment.accept,
                                                                   "EDR everywhere")
        controls = {c.id: c.ref for c in db.exec(select(Control))}
        links = sorted((risk_id, controls[c]) for risk_id, c in db.exec(select(RiskControl.risk_id,
                                                                               RiskControl.control_id)))
        assert links == [(r1.id, "C-1"), (r1.id, "C-2"), (r3.id, "C-2")]
        kris = {(i.risk_id, i.kpi_id): i for i in db.exec(select(RiskIndicator))}
        kpi = {k.code: k.id or 0 for k in db.exec(select(KpiDefinition))}
        assert (kris[(i1, kpi["IRT"])].breach_when, kris[(i1, kpi["IRT"])].threshold) == ("above", 8.0)
        assert (kris[(i1, kpi["OTD"])].breach_when, kris[(i3, kpi["OTD"])].threshold) == ("below", 85.0)
        assessments = {a.risk_id: a for a in db.exec(select(RiskAssessment))}
        assert len(assessments) == 3
        first = assessments[i1]
        assert (first.reason, first.inherent_level, first.residual_level, first.changed) == ("import", "Critical",
                                                                                            "Critical", True)
        # Reviewed on 15 September (09:00 London): a Critical risk is due again on the 1st of the next month.
        assert first.assessed_at == datetime(2026, 9, 15, 8, tzinfo=UTC) == r1.last_reviewed_at
        assert r1.next_review_at == datetime(2026, 10, 1, 8, tzinfo=UTC)
        # Medium (3×3 → 2×2 Low): Low is reviewed yearly, on 1 January.
        assert (assessments[i3].residual_level, r3.next_review_at) == ("Low", datetime(2027, 1, 1, 9, tzinfo=UTC))
        assert (assessments[r2.id or 0].residual_level, r2.last_reviewed_at) == ("Medium", None)
        assert r2.next_review_at is not None and r2.next_review_at > datetime(2026, 12, 1, tzinfo=UTC)

    again = import_csv("risks", _register(tmp_path, people))
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, 3), "the same file twice changes nothing"
    assert factories.count(RiskAssessment) == 3 and factories.count(RiskControl) == 3
    assert factories.count(RiskIndicator) == 3


def test_a_stored_risks_text_and_links_update_but_its_scores_change_only_by_a_rescore(registry_db: str,
                                                                                      tmp_path: Path) -> None:
    people = _organisation()
    _categories(tmp_path)
    import_csv("risks", _register(tmp_path, people))
    with session() as db:
        before = db.exec(select(Risk).where(Risk.code == "R-1")).one()
    edited = factories.csv_file(tmp_path / "edited.csv", RISK_HEADER, [
        # Scores left empty keep the stored ones; the controls and KRIs become exactly those listed.
        ("R-1", "Ransomware on the file servers", "CYB", people["owner"], "Phishing", "Encryption",
         "Two days without files", "", "", "", "", "", "reduce", "EDR everywhere", "C-2", "IRT>6", "2026-01-01"),
        ("R-3", "Key supplier fails", "OPS", people["other"], "", "", "", "", "3", "3", "2", "2", "accept", "",
         "-", "-", "2026-11-20"),
    ])
    report = import_csv("risks", edited)
    assert (report.inserted, report.updated, report.unchanged) == (0, 2, 0)
    with session() as db:
        r1 = db.exec(select(Risk).where(Risk.code == "R-1")).one()
        assert (r1.title, r1.residual_likelihood, r1.residual_impact) == ("Ransomware on the file servers", 4, 5)
        assert (r1.last_reviewed_at, r1.next_review_at) == (before.last_reviewed_at, before.next_review_at), \
            "last_reviewed is read for a new risk only"
        refs = {c.id: c.ref for c in db.exec(select(Control))}
        assert [refs[c] for c in db.exec(select(RiskControl.control_id))] == ["C-2"]
        (kri,) = db.exec(select(RiskIndicator)).all()
        assert (kri.risk_id, kri.breach_when, kri.threshold) == (r1.id, "above", 6.0)
        assert len(db.exec(select(RiskAssessment)).all()) == 3, "no assessment written for an edit"

    rescored = factories.csv_file(tmp_path / "rescored.csv", RISK_HEADER, [
        ("R-1", "Ransomware on the file servers", "CYB", people["owner"], "", "", "", "", "5", "5", "3", "5",
         "reduce", "", "", "", "")])
    with pytest.raises(ImportRefused) as refused:
        import_csv("risks", rescored)
    (problem,) = refused.value.problems
    assert (problem.line, problem.column, problem.value) == (2, "residual_likelihood", "3")
    assert "re-score in risk-review" in problem.why
    with session() as db:
        assert db.exec(select(Risk.residual_likelihood).where(Risk.code == "R-1")).one() == 4


def test_a_bad_register_is_refused_whole_naming_every_bad_row(registry_db: str, tmp_path: Path) -> None:
    people = _organisation()
    _categories(tmp_path)
    bad = factories.csv_file(tmp_path / "bad.csv", RISK_HEADER, [
        ("R-1", "Fine", "OPS", people["owner"], "", "", "", "", "3", "3", "2", "2", "", "", "C-2", "OTD<90", ""),
        ("R-2", "No category", "HR", people["owner"], "", "", "", "", "3", "3", "2", "2", "", "", "", "", ""),
        ("R-3", "Nobody owns it", "OPS", "nobody@test.example", "", "", "", "", "3", "3", "2", "2", "", "", "", "",
         ""),
        ("R-4", "Off the scale", "OPS", people["owner"], "", "", "", "", "6", "Catastrophic", "2", "2", "", "", "",
         "", ""),
        ("R-5", "Worse after controls", "OPS", people["owner"], "", "", "", "", "2", "3", "4", "3", "", "", "", "",
         ""),
        ("R-6", "Missing a score", "OPS", people["owner"], "", "", "", "", "2", "3", "1", "", "", "", "", "", ""),
        ("R-7", "Unknown and ambiguous controls", "OPS", people["owner"], "", "", "", "", "2", "2", "1", "1", "",
         "", "ZZ-9;C-1", "", ""),
        ("R-8", "A KRI without a side", "OPS", people["owner"], "", "", "", "", "2", "2", "1", "1", "", "", "",
         "OTD=90", ""),
        ("R-9", "An unknown KPI", "OPS", people["owner"], "", "", "", "", "2", "2", "1", "1", "", "", "", "NPS<5",
         ""),
        ("R-10", "No such matrix", "OPS", people["owner"], "", "", "", "7x7", "2", "2", "1", "1", "", "", "", "",
         ""),
        ("R-1", "Twice", "OPS", people["owner"], "", "", "", "", "3", "3", "2", "2", "", "", "", "", ""),
    ])
    with pytest.raises(ImportRefused) as refused:
        import_csv("risks", bad)
    named = [(p.line, p.column) for p in refused.value.problems]
    assert named == [
        (3, "category"), (4, "owner_email"), (5, "inherent_impact"), (5, "inherent_likelihood"),
        (6, "residual_likelihood"), (7, "residual_impact"), (8, "controls"), (8, "controls"), (9, "kri"),
        (10, "kri"), (11, "matrix"), (12, "code")]
    why = {(p.line, p.column): p.why for p in refused.value.problems}
    assert "1 to 5 or one of Insignificant" in why[(5, "inherent_impact")]
    assert "is a control of 2 frameworks" in " ".join(p.why for p in refused.value.problems if p.line == 8)
    assert "e.g. OTD<90" in why[(9, "kri")] and "same key as line 2" in why[(12, "code")]
    assert factories.count(Risk) == 0 and factories.count(RiskAssessment) == 0 and factories.count(RiskControl) == 0


def test_a_category_appetite_must_be_a_level_and_a_second_matrix_is_data(registry_db: str, tmp_path: Path) -> None:
    people = _organisation()
    with pytest.raises(ImportRefused) as refused:
        import_csv("risk-categories", factories.csv_file(tmp_path / "c.csv", ["code", "name", "appetite"], [
            ("OPS", "Operational", "Medium"), ("FIN", "Financial", "Amber")]))
    assert [(p.line, p.column, p.value) for p in refused.value.problems] == [(3, "appetite", "Amber")]
    assert factories.count(RiskCategory) == 0

    with session() as db:  # another matrix: rows, not code
        small = RiskMatrix(code="3x3", name="Three by three", likelihoods=["Low", "Medium", "High"],
                           impacts=["Low", "Medium", "High"],
                           cells=[["Green", "Green", "Amber"], ["Green", "Amber", "Red"], ["Amber", "Red", "Red"]])
        db.add(small)
        db.flush()
        _levels(db, small.id or 0)
    import_csv("risk-categories", factories.csv_file(tmp_path / "c.csv", ["code", "name", "appetite"], [
        ("OPS", "Operational", "Medium"), ("FIN", "Financial", "Amber")]))
    rows = factories.csv_file(tmp_path / "r.csv", RISK_HEADER, [
        ("F-1", "FX swing", "FIN", people["owner"], "", "", "", "3x3", "High", "High", "medium", "High", "", "", "",
         "", ""),
        ("F-2", "Wrong matrix for its category", "OPS", people["owner"], "", "", "", "3x3", "2", "2", "1", "1",
         "", "", "", "", "")])
    with pytest.raises(ImportRefused) as wrong:
        import_csv("risks", rows)
    assert [(p.line, p.column) for p in wrong.value.problems] == [(3, "category")]
    assert "no level of matrix 3x3" in wrong.value.problems[0].why
    import_csv("risks", factories.csv_file(tmp_path / "r.csv", RISK_HEADER, [
        ("F-1", "FX swing", "FIN", people["owner"], "", "", "", "3x3", "High", "High", "medium", "High", "", "", "",
         "", "")]))
    with session() as db:
        (assessment,) = db.exec(select(RiskAssessment)).all()
        assert (assessment.inherent_level, assessment.residual_level) == ("Red", "Red")


def _levels(db: Session, matrix_id: int) -> None:
    db.add_all([RiskLevel(matrix_id=matrix_id, name=name, rank=rank, colour=colour, review_cadence=cron)
                for name, rank, colour, cron in (("Green", 1, "#00aa00", "0 9 1 1 *"),
                                                 ("Amber", 2, "#ffaa00", "0 9 1 1,7 *"),
                                                 ("Red", 3, "#aa0000", "0 9 1 * *"))])
    db.flush()


def test_the_demo_register_imports_with_two_risks_above_appetite_and_some_due_this_quarter(any_db: str) -> None:
    from engine.deployments import PROJECT_ROOT
    from flows.reporting.operations_report import imports as kpi_imports
    from flows.risk.risk_review import register
    from registry.demo import seed

    register_kind(kpi_imports.KPIS)
    register_kind(kpi_imports.KPI_MEASUREMENTS)
    with session() as db:
        seed(db)
    demo = PROJECT_ROOT / "demo"
    import_csv("kpis", demo / "kpis.csv")
    import_csv("kpi-measurements", demo / "kpi_measurements.csv")
    assert import_csv("risk-categories", demo / "risk_categories.csv").inserted == 5
    assert import_csv("risks", demo / "risks.csv").inserted == 15
    with session() as db:
        rows = register.register(db)
        assert len({r.category_code for r in rows}) == 5
        assert [(r.code, r.residual.name, r.appetite) for r in rows if r.above_appetite] == [
            ("OPS-01", "Critical", "High"), ("CYB-01", "High", "Medium")]
        quarter_end = datetime(2026, 12, 31, 23, 59, tzinfo=UTC)
        assert sorted(r.code for r in register.to_review(db, quarter_end)) == [
            "CYB-01", "CYB-02", "FIN-02", "HSE-02", "OPS-01"]
        assert [(k.kpi_code, k.value) for k in register.kri_breaches(db)] == [("CAPA", 80.8)]
        owners = {r.owner_email for r in rows}
        assert len(owners) >= 8 and all(email.endswith("@demo.example") for email in owners)
        assert len(db.exec(select(RiskControl)).all()) == 12


def test_ops_init_imports_the_demo_register_once_and_leaves_what_staff_changed(
        registry_db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from engine.cli import app
    from tests.flows.reporting.operations_report.test_imports import _keep_environment

    _keep_environment(monkeypatch)
    runner = CliRunner()
    first = runner.invoke(app, ["init"])
    assert first.exit_code == 0, first.output
    assert "demo risk-categories: 5 imported" in first.output and "demo risks: 15 imported" in first.output
    assert (factories.count(Risk), factories.count(RiskAssessment)) == (15, 15)
    with session() as db:  # staff retire a risk; a later start must not bring it back
        retired = db.exec(select(Risk).where(Risk.code == "FIN-03")).one()
        retired.active = False
        db.add(retired)
    second = runner.invoke(app, ["init"])
    assert second.exit_code == 0 and "demo risk" not in second.output
    with session() as db:
        assert not db.exec(select(Risk.active).where(Risk.code == "FIN-03")).one()
    assert factories.count(RiskAssessment) == 15
