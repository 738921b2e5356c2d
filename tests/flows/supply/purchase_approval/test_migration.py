"""A registry made before purchase_request.order_not_sent_at keeps who was already told, so nobody is told twice."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import command

from registry import PurchaseRequest, reset_engines, session, trail
from registry.migrate import alembic_config
from tests import factories

_INSERT = sa.text("INSERT INTO purchase_request (key, vendor_id, requester_id, amount, status, approvers, "
                  "approved_levels, decision_note, created_at) VALUES (:key, :vendor, :requester, 10, 'approved', "
                  "'[]', 0, '', CURRENT_TIMESTAMP) RETURNING id")
# The vendor as the schema at 0009 has it (the model has columns added since).
_VENDOR = sa.text("INSERT INTO vendor (code, name, owner_id, standing, review_cadence, active) VALUES "
                  "('V1', 'Vendor One', :owner, 'approved', '0 7 1 1,4,7,10 *', :active) RETURNING id")


def test_a_request_noted_before_the_column_keeps_its_note(any_db: str) -> None:
    config = alembic_config(any_db)
    command.downgrade(config, "0009")
    reset_engines()
    with session() as db:
        requester = factories.person(db, "Pia Planner")
        vendor = db.execute(_VENDOR, {"owner": requester.id, "active": True}).scalar_one()
        noted, quiet = (db.execute(_INSERT, {"key": key, "vendor": vendor, "requester": requester.id}).scalar_one()
                        for key in ("noted", "quiet"))
        event = trail.record(db, actor="inventory-reorder", action="purchase_request.order_not_sent",
                             entity_type="purchase_request", entity_id=noted,
                             data={"vendor": "V1", "reason": "the vendor has no order contact"})
        at = event.at
    command.upgrade(config, "head")
    reset_engines()
    with session() as db:
        was_noted, was_quiet = db.get(PurchaseRequest, noted), db.get(PurchaseRequest, quiet)
        assert was_noted is not None and was_quiet is not None
        assert was_noted.order_not_sent_at == at and was_quiet.order_not_sent_at is None
