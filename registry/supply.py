"""Supply chain: vendors, deliveries, inventory, purchase requests, scorecards."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum

from sqlalchemy import JSON, Column, Index, Numeric, UniqueConstraint, text
from sqlmodel import Field, SQLModel

from registry.clock import utcnow


class Standing(StrEnum):
    preferred = "preferred"
    approved = "approved"
    probation = "probation"
    disqualified = "disqualified"


class RequestStatus(StrEnum):
    pending_approval = "pending_approval"
    approved = "approved"
    ordered = "ordered"
    rejected = "rejected"
    received = "received"


OPEN_REQUEST_STATUSES = (RequestStatus.pending_approval, RequestStatus.approved, RequestStatus.ordered)


def _money() -> Column[Decimal]:
    return Column(Numeric(14, 4), nullable=False)


class Vendor(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(unique=True, index=True, description="Natural key, as in the purchasing system.")
    name: str
    owner_id: int = Field(foreign_key="person.id", description="The vendor manager inside the organisation.")
    contact_id: int | None = Field(default=None, foreign_key="person.id", description="The vendor's order contact.")
    standing: Standing = Standing.approved
    review_cadence: str = Field("0 7 1 1,4,7,10 *", description="When the vendor is reviewed, as a cron expression.")
    last_reviewed_at: datetime | None = None
    next_review_at: datetime | None = None
    contract_end: date | None = None
    active: bool = True
    cost_centre_id: int | None = Field(default=None, foreign_key="cost_centre.id",
                                       description="Where a reorder from this vendor is charged.")
    account: str = ""


class Delivery(SQLModel, table=True):
    """One purchase-order line as delivered."""

    __table_args__ = (UniqueConstraint("po_number", "line"), Index("ix_delivery_vendor_promised", "vendor_id",
                                                                    "promised_date"))

    id: int | None = Field(default=None, primary_key=True)
    po_number: str
    line: int
    vendor_id: int = Field(foreign_key="vendor.id")
    sku: str
    promised_date: date
    delivered_date: date | None = None
    qty_ordered: int
    qty_received: int = 0
    qty_rejected: int = 0
    unit_price: Decimal = Field(sa_column=_money())
    contracted_price: Decimal = Field(sa_column=_money())


class InventoryItem(SQLModel, table=True):
    __tablename__ = "inventory_item"
    __table_args__ = (
        UniqueConstraint("sku", "location"),
        # A plain index on either column cannot serve `on_hand <= reorder_point`; a partial one can.
        Index("ix_inventory_at_or_below_reorder", "vendor_id", "id",
              sqlite_where=text("on_hand <= reorder_point"), postgresql_where=text("on_hand <= reorder_point")),
    )

    id: int | None = Field(default=None, primary_key=True)
    sku: str
    location: str
    description: str = ""
    on_hand: int
    reorder_point: int
    reorder_qty: int
    lead_time_days: int = 7
    unit_cost: Decimal = Field(sa_column=_money())
    vendor_id: int = Field(foreign_key="vendor.id", index=True)


class PurchaseRequest(SQLModel, table=True):
    __tablename__ = "purchase_request"

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(unique=True, index=True, description="vendor and day: one request per vendor per run day.")
    vendor_id: int = Field(foreign_key="vendor.id", index=True)
    requester_id: int = Field(foreign_key="person.id")
    amount: Decimal = Field(sa_column=_money())
    status: RequestStatus = Field(default=RequestStatus.pending_approval, index=True)
    approvers: list[int] = Field(default_factory=list, sa_column=Column(JSON, nullable=False),
                                 description="Person ids who must approve, in order.")
    approved_levels: int = 0
    current_step_id: int | None = Field(default=None, foreign_key="human_step.id")
    decision_note: str = ""
    created_at: datetime = Field(default_factory=utcnow)
    decided_at: datetime | None = None
    ordered_at: datetime | None = None
    order_not_sent_at: datetime | None = Field(
        default=None, description="When the requester was told the order could not be sent (no vendor contact).")
    cost_centre_id: int | None = Field(default=None, foreign_key="cost_centre.id", index=True)
    account: str = ""
    over_budget_amount: Decimal | None = Field(
        default=None, sa_column=Column(Numeric(14, 2), nullable=True),
        description="By how much it took its cost centre over budget when created; None: it did not.")
    over_budget_pct: float | None = None
    budget_remaining: Decimal | None = Field(
        default=None, sa_column=Column(Numeric(14, 2), nullable=True),
        description="What remained of its cost centre's year budget before it, when created.")


class PurchaseRequestLine(SQLModel, table=True):
    __tablename__ = "purchase_request_line"
    __table_args__ = (UniqueConstraint("request_id", "item_id"),)

    id: int | None = Field(default=None, primary_key=True)
    request_id: int = Field(foreign_key="purchase_request.id", index=True)
    item_id: int = Field(foreign_key="inventory_item.id", index=True)
    quantity: int
    unit_cost: Decimal = Field(sa_column=_money())


class VendorScorecard(SQLModel, table=True):
    __tablename__ = "vendor_scorecard"
    __table_args__ = (UniqueConstraint("vendor_id", "period"),)

    id: int | None = Field(default=None, primary_key=True)
    vendor_id: int = Field(foreign_key="vendor.id", index=True)
    period: str
    deliveries: int
    on_time_rate: float | None = None
    fill_rate: float | None = None
    defect_rate: float | None = None
    price_variance: float | None = None
    score: float | None = None
    standing_before: Standing
    standing_proposed: Standing
    step_id: int | None = Field(default=None, foreign_key="human_step.id")
    decided_at: datetime | None = Field(default=None, description="When its change of standing was settled.")
    applied_at: datetime | None = None
    created_at: datetime = Field(default_factory=utcnow)


class ContractNotice(SQLModel, table=True):
    """One notice per vendor, contract end and threshold: sent once, never again on later runs."""

    __tablename__ = "contract_notice"
    __table_args__ = (UniqueConstraint("vendor_id", "contract_end", "days_before"),)

    id: int | None = Field(default=None, primary_key=True)
    vendor_id: int = Field(foreign_key="vendor.id")
    contract_end: date
    days_before: int
    sent_at: datetime = Field(default_factory=utcnow)
