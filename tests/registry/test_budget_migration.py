from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import sqlalchemy as sa
from alembic import command
from sqlmodel import select

from registry import BudgetLine, CostCentre, LineKind, Person, PurchaseRequest, Vendor, reset_engines, session
from registry.db import get_engine
from registry.migrate import alembic_config
from tests.registry.test_migrations import test_the_migrations_build_exactly_the_schema_the_models_describe


def test_a_registry_at_0011_keeps_its_vendors_and_requests_charged_nowhere_and_downgrades_back(any_db: str) -> None:
    config = alembic_config(any_db)
    command.downgrade(config, "0011")
    reset_engines()
    with session() as db:  # the person table is as it was at 0011
        manager = Person(name="Vera Vendor-Manager", email="vera@test.example")
        db.add(manager)
        db.flush()
        owner = manager.id or 0
    with get_engine(any_db).begin() as connection:
        vendor = connection.execute(sa.text(
            "INSERT INTO vendor (code, name, owner_id, standing, review_cadence, active) "
            "VALUES ('ACME', 'Acme', :owner, 'approved', '0 7 1 1,4,7,10 *', true) RETURNING id"),
            {"owner": owner}).scalar_one()
        connection.execute(sa.text(
            "INSERT INTO purchase_request (key, vendor_id, requester_id, amount, status, approvers, approved_levels, "
            "decision_note, created_at) VALUES ('ACME-2026-11-30', :vendor, :owner, 1250.50, 'approved', '[]', 0, "
            "'', :at)"), {"vendor": vendor, "owner": owner, "at": datetime(2026, 11, 30, 9, tzinfo=UTC)})
    command.upgrade(config, "head")
    reset_engines()

    with session() as db:
        kept = db.exec(select(Vendor)).one()
        request = db.exec(select(PurchaseRequest)).one()
        assert (kept.code, kept.cost_centre_id, kept.account) == ("ACME", None, "")
        assert (request.amount, request.cost_centre_id, request.account, request.over_budget_amount,
                request.budget_remaining) == (Decimal("1250.50"), None, "", None, None)
        centre = CostCentre(code="OPS", name="Operations", owner_id=owner)
        db.add(centre)
        db.flush()
        db.add(BudgetLine(cost_centre_id=centre.id or 0, account="6100", month=date(2026, 1, 1),
                          kind=LineKind.income, amount=Decimal("1000.00")))
        kept.cost_centre_id, kept.account = centre.id, "6100"
    test_the_migrations_build_exactly_the_schema_the_models_describe(any_db)

    with session() as db:  # charged vendors lose the charge on the way down, and keep everything else
        db.execute(sa.update(Vendor).values(cost_centre_id=None))
    command.downgrade(config, "0011")
    reset_engines()
    with get_engine(any_db).connect() as connection:
        tables = set(sa.inspect(connection).get_table_names())
        assert not tables & {"cost_centre", "budget_line", "actual", "budget_explanation"}
        assert "account" not in {c["name"] for c in sa.inspect(connection).get_columns("vendor")}
        assert connection.execute(sa.text("SELECT code FROM vendor")).scalars().all() == ["ACME"]
        assert connection.execute(sa.text("SELECT key FROM purchase_request")).scalars().all() == ["ACME-2026-11-30"]
    command.upgrade(config, "head")  # and up again: the enum type went with the tables
    reset_engines()
    test_the_migrations_build_exactly_the_schema_the_models_describe(any_db)
