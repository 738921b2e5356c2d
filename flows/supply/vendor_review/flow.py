"""The quarterly vendor review: scorecards from deliveries, approved changes of standing, contract-end notices."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import and_, case, func
from sqlalchemy import select as sa_select  # sqlmodel's select is typed for at most four columns
from sqlmodel import Session, col, select

from engine import notify, runs
from engine.deadlines import due_within, next_due, quarter_bounds, quarter_of, working_days_from_now
from engine.settings import get_settings
from flows.supply.vendor_review import rules
from flows.supply.vendor_review.notices import contracts_due, notice_item, notify_contract_ends, today
from flows.supply.vendor_review.report import card_item, decision, publish
from flows.supply.vendor_review.tasks import procurement_manager, request_approvals, settle_decisions
from registry import Delivery, HumanStep, Person, Vendor, VendorScorecard, session, trail
from registry.clock import as_utc, utcnow


class ReviewParameters(BaseModel):
    model_config = ConfigDict(extra="forbid")  # an unknown parameter is refused, not silently ignored
    vendor_code: str | None = Field(
        None, title="Vendor code",
        description="Review only this vendor, whatever its cadence. Empty: every active vendor due by its review "
                    "cadence in the period.",
    )
    period: str | None = Field(
        None, title="Period", description="Quarter to review, like 2026-Q3. Empty: the quarter that just ended.",
        pattern=r"^\d{4}-[Qq][1-4]$",
    )
    weights: rules.Weights = Field(default_factory=rules.Weights, title="Score weights",
                                   description="Relative weight of each component of the score.")
    thresholds: rules.Thresholds = Field(default_factory=rules.Thresholds, title="Standing thresholds",
                                         description="The lowest score for each standing.")
    approval_days: int = Field(
        5, ge=1, le=30, title="Approval window (working days)",
        description="How long the procurement manager has to approve or reject each change of standing.",
    )
    contracts_only: bool = Field(
        False, title="Contract notices only",
        description="Only tell owners about contracts ending within 60 or 30 days; review no vendor.",
    )
    preview: bool = Field(False, title="Preview", description="Render what would be sent; write and send nothing.")

    @field_validator("vendor_code", mode="before")
    @classmethod
    def _blank_is_every_vendor(cls, value: Any) -> Any:
        return (value.strip() or None) if isinstance(value, str) else value


class ReviewOutcome(BaseModel):
    period: str
    status: str
    vendors: int = 0
    scored: int = 0
    proposed: int = 0
    approved: int = 0
    rejected: int = 0
    expired: int = 0
    contract_notices: int = 0
    report_sha256: str | None = None
    detail: str = ""


def _previous_quarter(moment: datetime, tz: str) -> str:
    start, _ = quarter_bounds(quarter_of(moment, tz), tz)
    return quarter_of(start - timedelta(days=1), tz)


def _period_dates(period: str) -> tuple[date, date]:
    """First and first-after-last calendar day: deliveries carry local dates, not moments."""
    start, end = quarter_bounds(period, "UTC")
    return start.date(), end.date()


def _decimal(value: Any) -> Decimal:
    """SQLite hands sums of money back as floats, PostgreSQL as Decimals."""
    return Decimal(0) if value is None else Decimal(str(value))


def _card(vendor: Vendor, period: str, sums: rules.DeliveryTotals, params: ReviewParameters) -> VendorScorecard:
    measured = rules.metrics(sums)
    points = rules.score(measured, params.weights)
    return VendorScorecard(
        vendor_id=vendor.id or 0, period=period, deliveries=measured.deliveries,
        on_time_rate=measured.on_time_rate, fill_rate=measured.fill_rate, defect_rate=measured.defect_rate,
        price_variance=measured.price_variance, score=points, standing_before=vendor.standing,
        standing_proposed=rules.standing_for(points, vendor.standing, params.thresholds),
    )


def _vendors(db: Session, ids: list[int]) -> list[Vendor]:
    return list(db.exec(select(Vendor).where(col(Vendor.id).in_(ids)).order_by(col(Vendor.code))))


@task
def vendors_due(vendor_code: str | None, period: str) -> list[int]:
    """The vendor asked for, or every active vendor whose review cadence falls due in the period."""
    tz = get_settings().timezone
    with session() as db:
        if vendor_code:
            vendor = db.exec(select(Vendor).where(Vendor.code == vendor_code)).first()
            if vendor is None:
                raise ValueError(f"vendor {vendor_code!r} does not exist")
            return [vendor.id or 0]
        start, end = quarter_bounds(period, tz)
        vendors = db.exec(select(Vendor).where(col(Vendor.active).is_(True)).order_by(col(Vendor.code)))
        return [v.id or 0 for v in vendors if due_within(v.review_cadence, start, end, tz)]


@task
def measure(period: str, vendor_ids: list[int]) -> dict[int, rules.DeliveryTotals]:
    """Every vendor's delivery totals for the period in one aggregate query (vendors without lines are absent)."""
    if not vendor_ids:
        return {}
    start, end = _period_dates(period)
    delivered, promised = col(Delivery.delivered_date), col(Delivery.promised_date)
    ordered, unit, contracted = col(Delivery.qty_ordered), col(Delivery.unit_price), col(Delivery.contracted_price)
    query = (
        sa_select(col(Delivery.vendor_id), func.count(), func.count(delivered),
                  func.sum(case((and_(delivered.is_not(None), delivered <= promised), 1), else_=0)),
                  func.sum(ordered), func.sum(col(Delivery.qty_received)), func.sum(col(Delivery.qty_rejected)),
                  func.sum((unit - contracted) * ordered), func.sum(contracted * ordered))
        .where(promised >= start, promised < end, col(Delivery.vendor_id).in_(vendor_ids))
        .group_by(col(Delivery.vendor_id))
    )
    with session() as db:
        rows = db.connection().execute(query).all()
    return {
        vendor_id: rules.DeliveryTotals(
            lines=int(lines), delivered=int(done), on_time=int(on_time or 0), ordered=int(qty or 0),
            received=int(received or 0), rejected=int(rejected or 0), price_delta=_decimal(delta),
            contracted_value=_decimal(value))
        for vendor_id, lines, done, on_time, qty, received, rejected, delta, value in rows
    }


@task
def record_scorecards(params: ReviewParameters, period: str, vendor_ids: list[int],
                      totals: dict[int, rules.DeliveryTotals]) -> int:
    """A scorecard for every vendor without one for the period, and one digest per owner of the new ones."""
    tz = get_settings().timezone
    _, period_end = quarter_bounds(period, tz)
    now = utcnow()
    with session() as db:
        scored = set(db.exec(select(VendorScorecard.vendor_id).where(
            VendorScorecard.period == period, col(VendorScorecard.vendor_id).in_(vendor_ids))))
        new = [(v, _card(v, period, totals.get(v.id or 0, rules.DeliveryTotals()), params))
               for v in _vendors(db, vendor_ids) if v.id not in scored]
        by_owner: dict[int, list[dict[str, Any]]] = {}
        for vendor, card in new:
            db.add(card)
            vendor.last_reviewed_at = now
            vendor.next_review_at = next_due(vendor.review_cadence, max(now, period_end), tz)
            db.add(vendor)
            db.flush()
            trail.record(db, actor=rules.ACTOR, action="vendor.scored", entity_type="vendor", entity_id=vendor.id or 0,
                         data={"period": period, "scorecard_id": card.id, "deliveries": card.deliveries,
                               "score": card.score, "standing": card.standing_before.value,
                               "proposed": card.standing_proposed.value})
            by_owner.setdefault(vendor.owner_id, []).append(card_item(vendor, card))
        # Keyed by the batch, not just the period: a later run for another vendor still tells its owner.
        ids = notify.digest(db, key=f"vendor-review-{period}-scorecards-{min(c.id or 0 for _, c in new)}",
                            template="supply/vendor_review/scorecards", items=by_owner, context={"period": period},
                            items_as="scorecards") if new else []
    notify.deliver_due(ids=ids)
    return len(new)


def _preview_section(person: Person | None, template: str, context: dict[str, Any]) -> str:
    return notify.preview_for(person, template, context) if person is not None else ""


@task
def preview_review(params: ReviewParameters, period: str, vendor_ids: list[int],
                   totals: dict[int, rules.DeliveryTotals]) -> str:
    """Render every message a run would send now, as an artifact; nothing is written or sent."""
    on = today()
    parts: list[str] = []
    with session() as db:
        scored = set(db.exec(select(VendorScorecard.vendor_id).where(
            VendorScorecard.period == period, col(VendorScorecard.vendor_id).in_(vendor_ids))))
        cards = [(v, _card(v, period, totals.get(v.id or 0, rules.DeliveryTotals()), params))
                 for v in _vendors(db, vendor_ids) if v.id not in scored]
        by_owner: dict[int, list[dict[str, Any]]] = {}
        for vendor, card in cards:
            by_owner.setdefault(vendor.owner_id, []).append(card_item(vendor, card))
        for owner_id, items in by_owner.items():
            parts.append(_preview_section(db.get(Person, owner_id), "supply/vendor_review/scorecards",
                                          {"period": period, "scorecards": items}))
        changes = [{**card_item(v, c), "owner": getattr(db.get(Person, v.owner_id), "name", ""), "step_id": 0}
                   for v, c in cards if c.standing_proposed != c.standing_before]
        if changes:
            due = working_days_from_now(params.approval_days)
            parts.append(_preview_section(procurement_manager(db), "supply/vendor_review/standing_changes",
                                          {"period": period, "due_at": due, "changes": changes}))
        contracts: dict[int, list[dict[str, Any]]] = {}
        for vendor, owed in contracts_due(db, params.vendor_code, on):
            contracts.setdefault(vendor.owner_id, []).append(notice_item(vendor, on, owed))
        for owner_id, items in contracts.items():
            parts.append(_preview_section(db.get(Person, owner_id), "supply/vendor_review/contract_ending",
                                          {"contracts": items}))
    create_markdown_artifact("\n".join(parts) or "Nothing would be sent.",
                             description=f"Preview of the vendor review {period}")
    return (f"{len(cards)} scorecard(s), {len(changes)} change(s) of standing and "
            f"{sum(len(i) for i in contracts.values())} contract notice(s) rendered as an artifact; nothing sent")


def _tally(period: str, vendor_ids: list[int]) -> dict[str, int]:
    with session() as db:
        rows = db.exec(select(VendorScorecard, HumanStep)
                       .outerjoin(HumanStep, col(HumanStep.id) == VendorScorecard.step_id)
                       .where(VendorScorecard.period == period, col(VendorScorecard.vendor_id).in_(vendor_ids)))
        labels = [decision(card, step) for card, step in rows]
    unchanged = ("unchanged", "no deliveries: standing kept")
    return {"proposed": sum(label not in unchanged for label in labels), "approved": labels.count("approved"),
            "rejected": labels.count("rejected"),
            "expired": labels.count("expired") + labels.count("cancelled")}


@flow(name="vendor-review", log_prints=True, on_running=[runs.stamp_process])
def vendor_review(params: ReviewParameters = ReviewParameters()) -> ReviewOutcome:  # noqa: B008 (the UI form default)
    """Quarterly vendor review: scorecards from the period's deliveries, approved changes of standing.

    For one vendor, or every vendor due by its review cadence in the period, computes the on-time, fill, defect
    and price-variance rates, a weighted score and the standing it earns, and sends each vendor owner one digest
    of their vendors' scorecards. A change of standing waits for the procurement manager's approval from a link
    (one message listing every change). Owners hear once per threshold about contracts ending within 60 and 30
    days. Publishes a table of scorecards and an HTML report with a score chart. Safe to re-run: every step is
    keyed, so nothing is scored, asked or sent twice.
    """
    logger = get_run_logger()
    tz = get_settings().timezone
    period = (params.period or _previous_quarter(as_utc(flow_run.get_scheduled_start_time()), tz)).upper()
    vendor_ids = [] if params.contracts_only else vendors_due(params.vendor_code, period)
    if params.preview:
        detail = preview_review(params, period, vendor_ids, measure(period, vendor_ids))
        return ReviewOutcome(period=period, status="preview", vendors=len(vendor_ids), detail=detail)
    noticed = notify_contract_ends(params.vendor_code)
    if params.contracts_only:
        return ReviewOutcome(period=period, status="contracts", contract_notices=noticed,
                             detail=f"{noticed} contract notice(s) sent")
    scored = record_scorecards(params, period, vendor_ids, measure(period, vendor_ids))
    asked = request_approvals(period, vendor_ids, params.approval_days)
    logger.info("Vendors %s: %s newly scored, %s change(s) of standing asked", len(vendor_ids), scored, asked)
    pending = settle_decisions(period, vendor_ids)
    report = publish(period, params.thresholds)
    for step_id in pending:
        try:
            outcome = runs.wait_for_step(step_id)
        except runs.StepHeldElsewhere as held:  # a duplicate run: the holder applies that decision
            logger.warning("Change of standing: %s", held)
            continue
        logger.info("Change of standing, step %s: %s", step_id, outcome.outcome)
        settle_decisions(period, vendor_ids)
    if pending:
        report = publish(period, params.thresholds)
    counts = _tally(period, vendor_ids)
    return ReviewOutcome(period=period, status="reviewed", vendors=len(vendor_ids), scored=scored,
                         contract_notices=noticed, report_sha256=report, **counts,
                         detail=f"{counts['proposed']} change(s) of standing: {counts['approved']} approved, "
                                f"{counts['rejected']} rejected, {counts['expired']} expired")
