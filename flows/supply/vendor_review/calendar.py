"""What the vendor review puts on the calendar: each active vendor's next review and the end of its contract."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlmodel import Session, col, select

from engine.deadlines import next_due
from engine.processes import Due
from engine.settings import get_settings
from registry import Vendor
from registry.clock import as_utc, utcnow


def obligations(db: Session, horizon: datetime) -> Iterator[Due]:
    """Reviews falling due before `horizon` (overdue ones too): the stored next review, or, for a vendor never
    scheduled, its cadence's next occurrence after the last review (from now if never reviewed); and contracts
    ending before it that have not ended yet, due at the start of their last day in the organisation's zone."""
    zone = ZoneInfo(get_settings().timezone)
    now, until = utcnow(), as_utc(horizon)
    today = now.astimezone(zone).date()
    for vendor in db.exec(select(Vendor).where(col(Vendor.active).is_(True)).order_by(col(Vendor.code))):
        what = f"{vendor.code} {vendor.name}"
        review = as_utc(vendor.next_review_at or next_due(vendor.review_cadence, vendor.last_reviewed_at or now,
                                                          zone.key))
        if review < until:
            yield Due(kind="Vendor review", what=what, owner_id=vendor.owner_id, due_at=review)
        if vendor.contract_end is not None and vendor.contract_end >= today:
            end = as_utc(datetime(vendor.contract_end.year, vendor.contract_end.month, vendor.contract_end.day,
                                  tzinfo=zone))
            if end < until:
                yield Due(kind="Contract end", what=what, owner_id=vendor.owner_id, due_at=end)
