"""Contract-end notices, daily: each vendor owner hears once per threshold (60 and 30 days), never again."""

from __future__ import annotations

from datetime import date, timedelta
from zoneinfo import ZoneInfo

from prefect import task
from pydantic import BaseModel, ConfigDict, Field
from sqlmodel import Session, col, select

from engine import runs
from engine.settings import get_settings
from engine.work import Digest, preview, unit
from flows.supply.vendor_review import PROCESS, rules
from flows.supply.vendor_review.tasks import TEMPLATES
from registry import ContractNotice, Vendor, trail
from registry.clock import utcnow


class NoticeParameters(BaseModel):
    model_config = ConfigDict(extra="forbid")  # an unknown parameter is refused, not silently ignored
    vendor_code: rules.VendorCode = Field("", title="Vendor code",
                                    description="Only this vendor's contract. Empty: every active vendor's.")
    preview: bool = Field(False, title="Preview",
                          description="Render the notices that would be sent; record and send nothing.")

class NoticeOutcome(BaseModel):
    status: str
    contract_notices: int = 0
    detail: str = ""


def today() -> date:
    """The organisation's calendar day: contracts end on dates, not moments."""
    return utcnow().astimezone(ZoneInfo(get_settings().timezone)).date()




def _contracts_due(db: Session, vendor_code: str | None, on: date) -> list[tuple[Vendor, rules.ContractNotice]]:
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


@task
def notify_contract_ends(vendor_code: str | None) -> int:
    """One message per owner listing their contracts that reached a threshold; the notices recorded with it."""
    on = today()
    with unit() as db:
        owed = _contracts_due(db, vendor_code, on)
        recorded: list[ContractNotice] = []
        for vendor, due in owed:
            assert vendor.contract_end is not None
            # Every threshold reached is recorded, even the one not sent: a later run must not send it late.
            recorded += [ContractNotice(vendor_id=vendor.id or 0, contract_end=vendor.contract_end, days_before=days)
                         for days in due.record]
            trail.record(db, actor=PROCESS.actor, action="vendor.contract_end_noticed", entity_type="vendor",
                         entity_id=vendor.id or 0, data={"contract_end": vendor.contract_end.isoformat(),
                                                         "thresholds": list(due.record), "sent": due.send})
        if not recorded:
            return 0
        db.add_all(recorded)
        db.flush()
        # The notices and their messages commit together, so the first new notice's id names this batch for good.
        notices = Digest(key=f"vendor-contracts-{min(n.id or 0 for n in recorded)}",
                         template=f"{TEMPLATES}/contract_ending", context={}, items_as="contracts")
        for vendor, due in owed:
            assert vendor.contract_end is not None
            notices.add(vendor.owner_id, {"code": vendor.code, "name": vendor.name,
                                          "contract_end": vendor.contract_end,
                                          "days_left": (vendor.contract_end - on).days, "threshold": due.send})
        notices.queue(db)
    return len(owed)


@runs.process_flow("vendor-review-contract-notices")  # its deployment: vendor-contract-notices
def vendor_contract_notices(params: NoticeParameters) -> NoticeOutcome:
    """Daily contract-end notices: each vendor owner gets one message listing their contracts that end within 60
    or 30 days, once per threshold and never again (a contract reaching both at once is told the nearer one).
    Runs daily because a quarterly review alone would let a contract ending 61-90 days after it pass unnoticed."""
    if params.preview:
        with preview("Preview of the contract-end notices") as shown:
            owed = notify_contract_ends.fn(params.vendor_code)
        return NoticeOutcome(status="preview", contract_notices=owed,
                             detail=f"{owed} contract notice(s) in {len(shown.messages)} message(s) rendered as an "
                                    "artifact; nothing sent")
    sent = notify_contract_ends(params.vendor_code)
    return NoticeOutcome(status="contracts", contract_notices=sent, detail=f"{sent} contract notice(s) sent")
