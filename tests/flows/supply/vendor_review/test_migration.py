"""Migration 0008: a registry made before scorecards carried their settlement keeps every decided change settled."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import command
from sqlalchemy import update
from sqlmodel import col, select

from registry import HumanStep, StepStatus, VendorScorecard, reset_engines, session
from registry.migrate import alembic_config
from tests import factories

AT = datetime(2026, 10, 2, 9, tzinfo=UTC)


def test_a_registry_made_at_0007_marks_its_decided_changes_settled(any_db: str) -> None:
    config = alembic_config(any_db)
    command.downgrade(config, "0007")
    reset_engines()
    cards = sa.table("vendor_scorecard", *(sa.column(c) for c in (
        "id", "vendor_id", "period", "deliveries", "standing_before", "standing_proposed", "step_id", "applied_at",
        "created_at")))
    with session() as db:
        owner = factories.person(db, "Olive Owner")
        buyer = factories.person(db, "Paula Procurement")
        steps = {name: factories.step(db, buyer) for name in ("applied", "rejected", "waiting")}
        db.execute(update(HumanStep).where(col(HumanStep.id) == steps["rejected"].id)
                   .values(status=StepStatus.answered, answered_at=AT, answer={"decision": "reject", "comment": "No"}))
        ids = {}
        # Vendors as the table was at 0007 (the model has gained columns since).
        vendors = sa.table("vendor", *(sa.column(c) for c in ("id", "code", "name", "owner_id", "standing",
                                                               "review_cadence", "active")))
        for name, step in steps.items():
            vendor = db.execute(vendors.insert().values(
                code=f"V-{name}", name=name, owner_id=owner.id, standing="approved",
                review_cadence="0 7 1 1,4,7,10 *", active=True).returning(vendors.c.id)).scalar_one()
            ids[name] = db.execute(cards.insert().values(
                vendor_id=vendor, period="2026-Q3", deliveries=3, standing_before="approved",
                standing_proposed="preferred", step_id=step.id, applied_at=AT if name == "applied" else None,
                created_at=AT).returning(cards.c.id)).scalar_one()
    command.upgrade(config, "head")
    reset_engines()

    with session() as db:
        settled = {c.id: c.decided_at for c in db.exec(select(VendorScorecard))}
    assert settled == {ids["applied"]: AT, ids["rejected"]: AT, ids["waiting"]: None}
