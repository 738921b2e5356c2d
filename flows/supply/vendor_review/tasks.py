"""The vendor review's tasks: each loads, calls the rules and stores inside one unit of work."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE
from sqlalchemy import and_, case, func, update
from sqlalchemy import select as sa_select  # sqlmodel's select is typed for at most four columns
from sqlmodel import Session, col, select

from engine import gate, occasions, runs
from engine.answers import Decision, decision_of
from engine.deadlines import answer_window, due_within, next_due, quarter_bounds, quarter_of, working_days_from_now
from engine.findings import ActionSpec, Origin, raise_finding, working_days_for
from engine.settings import get_settings
from engine.work import Digest, unit
from flows.supply.vendor_review import PROCESS, rules
from flows.supply.vendor_review.forms import standing_change_details
from registry import (
    Criticality,
    Delivery,
    HumanStep,
    Occasion,
    OccasionStatus,
    Person,
    Standing,
    Vendor,
    VendorScorecard,
    trail,
)
from registry.clock import as_utc, utcnow
from registry.people import person_with_role

ROLE = "procurement_manager"
TEMPLATES = "supply/vendor_review"


def period_of(asked: str | None, started: datetime) -> str:
    """The quarter asked for, or the one that ended before the run was scheduled."""
    if asked:
        return asked.upper()
    tz = get_settings().timezone
    start, _ = quarter_bounds(quarter_of(as_utc(started), tz), tz)
    return quarter_of(start - timedelta(days=1), tz)


def procurement_manager(db: Session) -> Person:
    """The person holding the role, an active one first (an inactive one's delegate answers for them)."""
    person = person_with_role(db, ROLE)
    if person is not None:
        return person
    raise ValueError(f"no person has the role {ROLE!r}, so nobody can approve a change of vendor "
                     "standing: give the role to the procurement manager and run again")


def card_item(vendor: Vendor, card: VendorScorecard) -> dict[str, Any]:
    """What messages and reports say of one scorecard."""
    return {"code": vendor.code, "name": vendor.name, "deliveries": card.deliveries,
            "on_time_rate": card.on_time_rate, "fill_rate": card.fill_rate, "defect_rate": card.defect_rate,
            "price_variance": card.price_variance, "score": card.score,
            "standing_before": card.standing_before.value, "standing_proposed": card.standing_proposed.value}


@task
def open_review(period: str) -> int:
    """The review period's occasion, opened by whichever run comes first."""
    tz = get_settings().timezone
    start, end = quarter_bounds(period, tz)
    with unit() as db:
        occasion, _ = occasions.open_occasion(db, process=PROCESS.name, key=period, title=f"Vendor review {period}",
                                              period_start=start, period_end=end, flow_run_id=runs.current_run_id())
        return occasion.id or 0


@task
def vendors_due(vendor_code: str | None, period: str) -> list[int]:
    """The vendor asked for, or every active vendor whose review cadence falls due in the period."""
    tz = get_settings().timezone
    with unit() as db:
        if vendor_code:
            vendor = db.exec(select(Vendor).where(Vendor.code == vendor_code)).first()
            if vendor is None:
                raise ValueError(f"vendor {vendor_code!r} does not exist")
            return [vendor.id or 0]
        start, end = quarter_bounds(period, tz)
        vendors = db.exec(select(Vendor).where(col(Vendor.active).is_(True)).order_by(col(Vendor.code)))
        return [v.id or 0 for v in vendors if due_within(v.review_cadence, start, end, tz)]


def _decimal(value: Any) -> Decimal:
    """SQLite hands sums of money back as floats, PostgreSQL as Decimals."""
    return Decimal(0) if value is None else Decimal(str(value))


@task
def measure(period: str, vendor_ids: list[int]) -> dict[int, rules.DeliveryTotals]:
    """Every vendor's delivery totals for the period in one aggregate query (vendors without lines are absent)."""
    if not vendor_ids:
        return {}
    start, end = (moment.date() for moment in quarter_bounds(period, "UTC"))  # deliveries carry local dates
    delivered, promised = col(Delivery.delivered_date), col(Delivery.promised_date)
    ordered, contracted = col(Delivery.qty_ordered), col(Delivery.contracted_price)
    unit_price = col(Delivery.unit_price)
    query = (
        sa_select(col(Delivery.vendor_id), func.count(), func.count(delivered),
                  func.sum(case((and_(delivered.is_not(None), delivered <= promised), 1), else_=0)),
                  func.sum(ordered), func.sum(col(Delivery.qty_received)), func.sum(col(Delivery.qty_rejected)),
                  func.sum((unit_price - contracted) * ordered), func.sum(contracted * ordered))
        .where(promised >= start, promised < end, col(Delivery.vendor_id).in_(vendor_ids))
        .group_by(col(Delivery.vendor_id))
    )
    with unit() as db:
        rows = db.connection().execute(query).all()
    return {
        vendor_id: rules.DeliveryTotals(
            lines=int(lines), delivered=int(done), on_time=int(on_time or 0), ordered=int(qty or 0),
            received=int(received or 0), rejected=int(rejected or 0), price_delta=_decimal(delta),
            contracted_value=_decimal(value))
        for vendor_id, lines, done, on_time, qty, received, rejected, delta, value in rows
    }


def _card(vendor: Vendor, period: str, sums: rules.DeliveryTotals, weights: rules.Weights,
          thresholds: rules.Thresholds) -> VendorScorecard:
    measured = rules.metrics(sums)
    points = rules.score(measured, weights)
    return VendorScorecard(
        vendor_id=vendor.id or 0, period=period, deliveries=measured.deliveries,
        on_time_rate=measured.on_time_rate, fill_rate=measured.fill_rate, defect_rate=measured.defect_rate,
        price_variance=measured.price_variance, score=points, standing_before=vendor.standing,
        standing_proposed=Standing(rules.standing_for(points, vendor.standing, thresholds)),
    )


@task
def record_scorecards(weights: rules.Weights, thresholds: rules.Thresholds, period: str, vendor_ids: list[int],
                      totals: dict[int, rules.DeliveryTotals]) -> int:
    """A scorecard for every vendor without one for the period, and one digest per owner of the new ones."""
    tz = get_settings().timezone
    _, period_end = quarter_bounds(period, tz)
    now = utcnow()
    with unit() as db:
        scored = set(db.exec(select(VendorScorecard.vendor_id).where(
            VendorScorecard.period == period, col(VendorScorecard.vendor_id).in_(vendor_ids))))
        new = [(v, _card(v, period, totals.get(v.id or 0, rules.DeliveryTotals()), weights, thresholds))
               for v in db.exec(select(Vendor).where(col(Vendor.id).in_(vendor_ids)).order_by(col(Vendor.code)))
               if v.id not in scored]
        if not new:
            return 0
        for vendor, card in new:
            db.add(card)
            vendor.last_reviewed_at = now
            vendor.next_review_at = next_due(vendor.review_cadence, max(now, period_end), tz)
            db.add(vendor)
        db.flush()
        # Keyed by the batch, not just the period: a later run for another vendor still tells its owner.
        cards = Digest(key=f"vendor-review-{period}-scorecards-{min(c.id or 0 for _, c in new)}",
                       template=f"{TEMPLATES}/scorecards", context={"period": period}, items_as="scorecards")
        for vendor, card in new:
            trail.record(db, actor=PROCESS.actor, action="vendor.scored", entity_type="vendor",
                         entity_id=vendor.id or 0,
                         data={"period": period, "scorecard_id": card.id, "deliveries": card.deliveries,
                               "score": card.score, "standing": card.standing_before.value,
                               "proposed": card.standing_proposed.value})
            cards.add(vendor.owner_id, card_item(vendor, card))
        cards.queue(db)
    return len(new)


@task
def ask_standing_changes(review_id: int, period: str, vendor_ids: list[int], approval_days: int) -> int:
    """One approval gate per proposed change of standing, all in one message to the procurement manager; the
    run that asks is the one each answer resumes."""
    with unit() as db:
        unasked = list(db.exec(select(VendorScorecard, Vendor).join(Vendor, col(Vendor.id) == VendorScorecard.vendor_id)
                               .where(VendorScorecard.period == period, col(VendorScorecard.vendor_id).in_(vendor_ids),
                                      col(VendorScorecard.standing_proposed) != col(VendorScorecard.standing_before),
                                      col(VendorScorecard.step_id).is_(None))
                               .order_by(col(Vendor.code))))
        if not unasked:
            return 0
        manager = procurement_manager(db)
        due, final = answer_window(approval_days)
        changes = gate.Digest(key=f"vendor-review-{period}-approvals-{min(card.id or 0 for card, _ in unasked)}",
                              template=f"{TEMPLATES}/standing_changes", context={"period": period, "due_at": due},
                              items_as="changes")
        for card, vendor in unasked:
            owner = db.get(Person, vendor.owner_id)
            step = changes.ask(db, item={**card_item(vendor, card), "owner": owner.name if owner else ""},
                               key=f"vendor-{vendor.id}-standing-{period}", approver_id=manager.id or 0,
                               title=f"Change {vendor.name} ({vendor.code}) from {card.standing_before.value} "
                                     f"to {card.standing_proposed.value}",
                               subject_type="vendor_scorecard", subject_id=card.id or 0, due_at=due,
                               expires_at=final, actor=PROCESS.actor,
                               details=standing_change_details(vendor, card, owner))
            card.step_id = step.id
            db.add(card)
        changes.queue(db)
        review = db.get(Occasion, review_id)
        assert review is not None
        occasions.set_status(db, review, OccasionStatus.collecting, actor=PROCESS.actor)
    return len(unasked)


def _settle(db: Session, card: VendorScorecard, vendor: Vendor, decided: Decision) -> dict[str, Any] | None:
    """Apply one decided change (once) and record it; a fall approved to probation or worse becomes a finding
    with a corrective action for the vendor's owner: its item for their message."""
    now = utcnow()
    # Claimed by one conditional UPDATE, so of two runs settling at once only one applies and records it.
    claimed = db.exec(update(VendorScorecard)  # type: ignore[call-overload]
                      .where(col(VendorScorecard.id) == card.id, col(VendorScorecard.decided_at).is_(None))
                      .values(decided_at=now, applied_at=now if decided.approved else None)
                      .execution_options(synchronize_session=False))
    if claimed.rowcount != 1:
        return None
    data = {"period": card.period, "scorecard_id": card.id, "step_id": decided.step_id, "score": card.score,
            "from": vendor.standing.value, "proposed": card.standing_proposed.value, "comment": decided.comment}
    actor = decided.by or PROCESS.actor
    if not decided.approved:
        trail.record(db, actor=actor, action=f"vendor.standing_change_{decided.verdict.value}", entity_type="vendor",
                     entity_id=vendor.id or 0, data=data)
        return None
    vendor.standing = card.standing_proposed
    db.add(vendor)
    trail.record(db, actor=actor, action="vendor.standing_changed", entity_type="vendor", entity_id=vendor.id or 0,
                 data={**data, "to": card.standing_proposed.value})
    return _raise_if_fallen(db, card, vendor, decided)


def _raise_if_fallen(db: Session, card: VendorScorecard, vendor: Vendor, decided: Decision) -> dict[str, Any] | None:
    severity = rules.fall_severity(card.standing_before, card.standing_proposed)
    if severity is None:
        return None
    level = Criticality(severity)
    review = occasions.find(db, PROCESS.name, card.period)
    raised = raise_finding(
        db, origin=Origin("vendor_scorecard", card.id or 0), code="standing-fell", severity=level,
        description=f"{vendor.name} ({vendor.code}) fell from {card.standing_before.value} to "
                    f"{card.standing_proposed.value} in the {card.period} review (score {card.score}).",
        actor=decided.by or PROCESS.actor, process=PROCESS.name, verifier_id=decided.by_id,
        occasion_id=review.id if review else None,
        action=ActionSpec(owner_id=vendor.owner_id, due_at=working_days_from_now(working_days_for(level)),
                          description=f"Agree an improvement plan with {vendor.name} and check it is met."))
    if not raised.created or raised.action is None or raised.step is None:
        return None
    return {"code": vendor.code, "name": vendor.name, "score": card.score, "severity": level.value,
            "standing_before": card.standing_before.value, "standing_now": card.standing_proposed.value,
            "description": raised.action.description, "due_at": raised.action.due_at, "step_id": raised.step.id}


@task(cache_policy=NO_CACHE)  # called again after every wait in the same run: it must read the registry afresh
def settle(period: str, vendor_ids: list[int]) -> list[int]:
    """Apply every decided change of standing (once); the steps still waiting for a decision."""
    pending: list[int] = []
    with unit() as db:
        rows = list(db.exec(select(VendorScorecard, HumanStep, Vendor)
                            .join(HumanStep, col(HumanStep.id) == VendorScorecard.step_id)
                            .join(Vendor, col(Vendor.id) == VendorScorecard.vendor_id)
                            .where(VendorScorecard.period == period, col(VendorScorecard.vendor_id).in_(vendor_ids),
                                   col(VendorScorecard.decided_at).is_(None))
                            .order_by(col(VendorScorecard.id))))
        raised: list[tuple[int, dict[str, Any]]] = []
        for card, step, vendor in rows:
            decided = decision_of(db, step)
            if decided is None:
                pending.append(step.id or 0)
            elif (item := _settle(db, card, vendor, decided)) is not None:
                raised.append((vendor.owner_id, item))
        if raised:
            actions = Digest(key=f"vendor-review-{period}-actions-{min(item['step_id'] for _, item in raised)}",
                             template=f"{TEMPLATES}/standing_fell", context={"period": period}, items_as="actions")
            for owner_id, item in raised:
                actions.add(owner_id, item)
            actions.queue(db)
    return pending
