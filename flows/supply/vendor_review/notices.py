"""Contract-end notices for the vendor review: each owner hears once per threshold, never again."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from prefect import task
from sqlmodel import Session, col, select

from engine import notify
from engine.settings import get_settings
from flows.supply.vendor_review import rules
from registry import ContractNotice, Vendor, session, trail
from registry.clock import utcnow


def today() -> date:
    """The organisation's calendar day: contracts end on dates, not moments."""
    return utcnow().astimezone(ZoneInfo(get_settings().timezone)).date()


def contracts_due(db: Session, vendor_code: str | None, on: date) -> list[tuple[Vendor, rules.ContractNotice]]:
    """Active vendors whose contract ends within the widest threshold and who are owed a notice, with it."""
    horizon = on + timedelta(days=max(rules.CONTRACT_NOTICE_DAYS))
    query = select(Vendor).where(col(Vendor.active).is_(True), col(Vendor.contract_end) >= on,
                                 col(Vendor.contract_end) <= horizon)
    if vendor_code:
        query = query.where(Vendor.code == vendor_code)
    vendors = list(db.exec(query.order_by(col(Vendor.code))))
    sent: dict[tuple[int, date], set[int]] = {}
    for notice in db.exec(select(ContractNotice).where(col(ContractNotice.vendor_id).in_([v.id for v in vendors]))):
        sent.setdefault((notice.vendor_id, notice.contract_end), set()).add(notice.days_before)
    owed = []
    for vendor in vendors:
        assert vendor.contract_end is not None
        due = rules.contract_notice(vendor.contract_end, on, sent.get((vendor.id or 0, vendor.contract_end), ()))
        if due.send is not None:
            owed.append((vendor, due))
    return owed


def notice_item(vendor: Vendor, on: date, due: rules.ContractNotice) -> dict[str, Any]:
    """What a message says of one contract."""
    assert vendor.contract_end is not None
    return {"code": vendor.code, "name": vendor.name, "contract_end": vendor.contract_end,
            "days_left": (vendor.contract_end - on).days, "threshold": due.send}


@task
def notify_contract_ends(vendor_code: str | None) -> int:
    """One message per owner listing their contracts that reached a threshold; the notices recorded with it."""
    on = today()
    with session() as db:
        by_owner: dict[int, list[dict[str, Any]]] = {}
        recorded: list[ContractNotice] = []
        for vendor, due in contracts_due(db, vendor_code, on):
            assert vendor.contract_end is not None
            # Every threshold reached is recorded, even the one not sent: a later run must not send it late.
            notices = [ContractNotice(vendor_id=vendor.id or 0, contract_end=vendor.contract_end, days_before=days)
                       for days in due.record]
            db.add_all(notices)
            db.flush()
            recorded += notices
            trail.record(db, actor=rules.ACTOR, action="vendor.contract_end_noticed", entity_type="vendor",
                         entity_id=vendor.id or 0, data={"contract_end": vendor.contract_end.isoformat(),
                                                         "thresholds": list(due.record), "sent": due.send})
            by_owner.setdefault(vendor.owner_id, []).append(notice_item(vendor, on, due))
        # The notices and their messages commit together, so the first new notice's id names this batch for good.
        ids = notify.digest(db, key=f"vendor-contracts-{min(n.id or 0 for n in recorded)}",
                            template="supply/vendor_review/contract_ending", items=by_owner, context={},
                            items_as="contracts") if recorded else []
    notify.deliver_due(ids=ids)
    return sum(len(items) for items in by_owner.values())
