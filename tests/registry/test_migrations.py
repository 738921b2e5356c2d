from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlmodel import Session, SQLModel, select
from sqlmodel.sql.sqltypes import UTCDateTime

from registry import (
    ActionStatus,
    Audit,
    Control,
    ControlTest,
    CorrectiveAction,
    Drill,
    Facility,
    Finding,
    FindingStatus,
    Framework,
    Occasion,
    OccasionStatus,
    Person,
    reset_engines,
    session,
    trail,
)
from registry.db import get_engine
from registry.migrate import alembic_config


def test_the_migrations_build_exactly_the_schema_the_models_describe(any_db: str) -> None:
    """A column added to a model without a migration (or the other way round) fails here, not in production."""
    with get_engine(any_db).connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        drift = compare_metadata(context, SQLModel.metadata)
    assert drift == [], drift


def _table(name: str, **columns: Any) -> sa.TableClause:
    return sa.table(name, *(sa.column(column, kind) for column, kind in columns.items()))


def _seed_at_0006(db: Session) -> dict[str, int]:
    """What a registry made before findings were shared holds: an audit with a failed control test's finding, a
    drill with two findings (their trail events say which kind), their corrective actions in free-text statuses."""
    at = datetime(2026, 7, 1, 9, tzinfo=UTC)
    manager = Person(name="Mara Manager", email="mara@test.example", roles=["compliance manager"])
    owner = Person(name="Otto Owner", email="otto@test.example")
    db.add_all([manager, owner])
    db.flush()
    framework = Framework(name="ISO 27001", compliance_manager_id=manager.id)
    db.add(framework)
    db.flush()
    control = Control(framework_id=framework.id or 0, ref="A.5.1", title="Policies", owner_id=owner.id,
                      cadence="0 9 1 1,4,7,10 *")
    facility = Facility(code="HQ", name="Head office")
    db.add_all([control, facility])
    db.flush()
    when = UTCDateTime()
    audit = db.execute(sa.insert(_table(
        "audit", framework_id=sa.Integer, period=sa.String, period_start=when, period_end=when,
        status=sa.Enum("collecting", "awaiting_signoff", "changes_requested", "closed", name="auditstatus"),
        opened_at=when, evidence_due_at=when, closed_at=when, report_sha256=sa.String, report_path=sa.String,
        signoff_round=sa.Integer)).values(
        framework_id=framework.id, period="2026-Q3", period_start=at, period_end=at + timedelta(days=91),
        status="closed", opened_at=at, evidence_due_at=at + timedelta(days=10), closed_at=at + timedelta(days=20),
        report_sha256="ab" * 32, report_path="/reports/audit.html", signoff_round=2)
        .returning(sa.column("id"))).scalar_one()
    test = ControlTest(audit_id=audit, control_id=control.id or 0, owner_id=owner.id or 0)
    db.add(test)
    db.flush()
    drill = db.execute(sa.insert(_table(
        "drill", key=sa.String, facility_id=sa.Integer, kind=sa.String, title=sa.String,
        measure=sa.Enum("headcount", "recovery", name="drillmeasure"),
        status=sa.Enum("running", "closed", name="drillstatus"), started_at=when, escalate_at=when,
        closes_at=when)).values(
        key="HQ-fire-2026-07-01", facility_id=facility.id, kind="fire_evacuation", title="Fire evacuation",
        measure="headcount", status="running", started_at=at, escalate_at=at + timedelta(minutes=5),
        closes_at=at + timedelta(minutes=20)).returning(sa.column("id"))).scalar_one()
    severity = sa.Enum("low", "medium", "high", name="criticality")
    finding = _table("finding", audit_id=sa.Integer, control_test_id=sa.Integer, drill_id=sa.Integer,
                     severity=severity, description=sa.String, status=sa.String, created_at=when)
    action = _table("corrective_action", finding_id=sa.Integer, owner_id=sa.Integer, description=sa.String,
                    due_at=when, status=sa.String, created_at=when)
    ids: dict[str, int] = {"audit": audit, "drill": drill, "test": test.id or 0, "manager": manager.id or 0}
    for name, values, action_status in (
            ("audit_finding", {"audit_id": audit, "control_test_id": test.id, "severity": "high",
                               "description": "A.5.1 failed", "status": "Closed"}, "done"),
            ("missing", {"drill_id": drill, "severity": "high", "description": "2 people missing",
                         "status": "open"}, "open"),
            ("rto", {"drill_id": drill, "severity": "medium", "description": "RTO missed",
                     "status": "resolved"}, "completed")):
        ids[name] = db.execute(sa.insert(finding).values(created_at=at, **values)
                               .returning(sa.column("id"))).scalar_one()
        ids[f"{name}_action"] = db.execute(sa.insert(action).values(
            finding_id=ids[name], owner_id=owner.id, description=f"Fix {name}", due_at=at + timedelta(days=14),
            status=action_status, created_at=at).returning(sa.column("id"))).scalar_one()
        if values.get("drill_id"):
            trail.record(db, actor="emergency-drill", action="finding.raised", entity_type="finding",
                         entity_id=ids[name], data={"drill": drill, "kind": name})
    return ids


def test_a_registry_made_at_0006_upgrades_and_keeps_its_audits_drills_findings_and_actions(any_db: str) -> None:
    config = alembic_config(any_db)
    command.downgrade(config, "0006")
    reset_engines()
    with session() as db:
        ids = _seed_at_0006(db)
    command.upgrade(config, "head")
    reset_engines()

    with session() as db:
        audit, drill = db.get(Audit, ids["audit"]), db.get(Drill, ids["drill"])
        assert audit is not None and drill is not None and audit.occasion_id and drill.occasion_id
        audit_occasion, drill_occasion = db.get(Occasion, audit.occasion_id), db.get(Occasion, drill.occasion_id)
        assert audit_occasion is not None and drill_occasion is not None
        assert (audit_occasion.process, audit_occasion.key, audit_occasion.status, audit_occasion.phase,
                audit_occasion.report_sha256, audit_occasion.report_path, audit_occasion.signoff_round) == (
            "compliance-audit", "ISO 27001 2026-Q3", OccasionStatus.closed, "closed", "ab" * 32,
            "/reports/audit.html", 2)
        assert audit_occasion.period_start is not None and audit_occasion.closed_at is not None
        assert audit_occasion.closed_at - audit_occasion.period_start == timedelta(days=20), "the audit's, copied"
        assert (drill_occasion.process, drill_occasion.key, drill_occasion.status, drill_occasion.title) == (
            "emergency-drill", "HQ-fire-2026-07-01", OccasionStatus.open, "Fire evacuation")

        found = {f.id: f for f in db.exec(select(Finding))}
        assert len(found) == 3
        kept = found[ids["audit_finding"]]
        assert (kept.origin_type, kept.origin_id, kept.code, kept.process, kept.occasion_id, kept.status,
                kept.verifier_id, kept.description) == (
            "control_test", ids["test"], "control", "compliance-audit", audit.occasion_id, FindingStatus.closed,
            ids["manager"], "A.5.1 failed")
        missing, rto = found[ids["missing"]], found[ids["rto"]]
        assert [(f.origin_type, f.origin_id, f.code, f.process, f.occasion_id, f.status) for f in (missing, rto)] == [
            ("drill", ids["drill"], "missing", "emergency-drill", drill.occasion_id, FindingStatus.open),
            ("drill", ids["drill"], "rto", "emergency-drill", drill.occasion_id, FindingStatus.closed)]

        actions = {a.finding_id: a for a in db.exec(select(CorrectiveAction))}
        assert [(actions[ids[n]].id, actions[ids[n]].status, actions[ids[n]].round, actions[ids[n]].description)
                for n in ("audit_finding", "missing", "rto")] == [
            (ids["audit_finding_action"], ActionStatus.done, 1, "Fix audit_finding"),
            (ids["missing_action"], ActionStatus.open, 1, "Fix missing"),
            (ids["rto_action"], ActionStatus.done, 1, "Fix rto")]
    test_the_migrations_build_exactly_the_schema_the_models_describe(any_db)


def test_occasions_gain_a_deadline_and_parameters_at_0015_and_lose_them_on_a_downgrade(any_db: str) -> None:
    """An occasion opened before 0015 keeps its row with neither (its process falls back); a downgrade drops both
    columns and keeps the occasion."""
    config = alembic_config(any_db)
    command.downgrade(config, "0014")
    reset_engines()
    at = datetime(2026, 11, 1, tzinfo=UTC)
    status = sa.Enum("open", "collecting", "awaiting_signoff", "changes_requested", "closed", "cancelled",
                     name="occasionstatus")
    occasion = _table("occasion", process=sa.String, key=sa.String, title=sa.String, status=status,
                      phase=sa.String, opened_at=UTCDateTime(), signoff_round=sa.Integer)
    with session() as db:
        kept = db.execute(sa.insert(occasion).values(
            process="budget-variance", key="2026-10", title="Budget variance October 2026", status="collecting",
            phase="collecting", opened_at=at, signoff_round=0).returning(sa.column("id"))).scalar_one()
        db.commit()
    command.upgrade(config, "head")
    reset_engines()
    with session() as db:
        old = db.get(Occasion, kept)
        assert old is not None and (old.key, old.due_at, old.parameters) == ("2026-10", None, None)
        old.due_at, old.parameters = at + timedelta(days=7), {"month": "2026-10", "justification_days": 5}
        db.add(old)
        db.commit()
    with session() as db:
        stored = db.get(Occasion, kept)
        assert stored is not None and stored.parameters == {"month": "2026-10", "justification_days": 5}
        assert stored.due_at == at + timedelta(days=7)

    command.downgrade(config, "0014")
    reset_engines()
    with get_engine(any_db).connect() as connection:
        columns = {c["name"] for c in sa.inspect(connection).get_columns("occasion")}
        assert {"due_at", "parameters"}.isdisjoint(columns) and "key" in columns
        assert connection.execute(sa.text("SELECT key FROM occasion")).scalars().all() == ["2026-10"]
    command.upgrade(config, "head")
    reset_engines()
    test_the_migrations_build_exactly_the_schema_the_models_describe(any_db)
