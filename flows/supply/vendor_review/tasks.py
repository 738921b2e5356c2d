"""Changes of standing: asked of the procurement manager, applied only once approved."""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE
from sqlalchemy import update
from sqlmodel import Session, col, select

from engine import notify
from engine.deadlines import answer_window
from engine.human_steps import ask
from flows.supply.vendor_review import rules
from flows.supply.vendor_review.report import card_item
from registry import AuditEvent, HumanStep, Person, StepStatus, Vendor, VendorScorecard, session, trail
from registry.clock import utcnow
from registry.people import person_with_role

ROLE = "procurement_manager"


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f} %"


def procurement_manager(db: Session) -> Person:
    """The person holding the role, an active one first (an inactive one's delegate answers for them)."""
    person = person_with_role(db, ROLE)
    if person is not None:
        return person
    raise ValueError(f"no person has the role {ROLE!r}, so nobody can approve a change of vendor "
                     "standing: give the role to the procurement manager and run again")


@task
def request_approvals(period: str, vendor_ids: list[int], approval_days: int) -> int:
    """One approval step per proposed change of standing, all in one message to the procurement manager."""
    with session() as db:
        unasked = list(db.exec(select(VendorScorecard, Vendor).join(Vendor, col(Vendor.id) == VendorScorecard.vendor_id)
                               .where(VendorScorecard.period == period, col(VendorScorecard.vendor_id).in_(vendor_ids),
                                      col(VendorScorecard.standing_proposed) != col(VendorScorecard.standing_before),
                                      col(VendorScorecard.step_id).is_(None))
                               .order_by(col(Vendor.code))))
        if not unasked:
            return 0
        manager = procurement_manager(db)
        due, final = answer_window(approval_days)
        changes: list[dict[str, Any]] = []
        for card, vendor in unasked:
            owner = db.get(Person, vendor.owner_id)
            # No flow run on the step yet: wait_for_step sets it on the one step the run waits for, so an answer
            # to another step never resumes the run with the wrong outcome.
            step = ask(db, key=f"vendor-{vendor.id}-standing-{period}", person_id=manager.id or 0, form="approval",
                       kind="approval", title=f"Change {vendor.name} ({vendor.code}) from "
                                              f"{card.standing_before.value} to {card.standing_proposed.value}",
                       subject_type="vendor_scorecard", subject_id=card.id or 0, due_at=due, expires_at=final,
                       actor=rules.ACTOR, details=_step_details(vendor, card, owner))
            card.step_id = step.id
            db.add(card)
            changes.append({**card_item(vendor, card), "owner": owner.name if owner else "", "step_id": step.id})
        key = f"vendor-review-{period}-approvals-{min(c['step_id'] for c in changes)}"
        ids = notify.digest(db, key=key, template="supply/vendor_review/standing_changes",
                            items={manager.id or 0: changes},
                            context={"period": period, "due_at": due}, items_as="changes")
    notify.deliver_due(ids=ids)
    return len(changes)


def _step_details(vendor: Vendor, card: VendorScorecard, owner: Person | None) -> dict[str, Any]:
    return {"vendor": f"{vendor.name} ({vendor.code})", "owner": owner.name if owner else "",
            "period": card.period, "deliveries": card.deliveries, "score": card.score,
            "on-time rate": _percent(card.on_time_rate), "fill rate": _percent(card.fill_rate),
            "defect rate": _percent(card.defect_rate), "price variance": _percent(card.price_variance),
            "current standing": card.standing_before.value, "proposed standing": card.standing_proposed.value}


_DECIDED = {"rejected": "vendor.standing_change_rejected", "expired": "vendor.standing_change_expired",
            "cancelled": "vendor.standing_change_cancelled"}


def _settle(db: Session, card: VendorScorecard, step: HumanStep, vendor: Vendor) -> None:
    answer = step.answer or {}
    decider = db.get(Person, step.answered_by_id) if step.answered_by_id else None
    actor = decider.email if decider else rules.ACTOR
    data = {"period": card.period, "scorecard_id": card.id, "step_id": step.id, "score": card.score,
            "from": vendor.standing.value, "proposed": card.standing_proposed.value,
            "comment": answer.get("comment", "")}
    if step.status == StepStatus.answered and answer.get("decision") == "approve":
        # Claimed by one conditional UPDATE, so two runs settling at once change the standing once.
        claimed = db.exec(update(VendorScorecard)
                          .where(col(VendorScorecard.id) == card.id, col(VendorScorecard.applied_at).is_(None))
                          .values(applied_at=utcnow()).execution_options(synchronize_session=False))
        if claimed.rowcount == 1:
            vendor.standing = card.standing_proposed
            db.add(vendor)
            trail.record(db, actor=actor, action="vendor.standing_changed", entity_type="vendor",
                         entity_id=vendor.id or 0, data={**data, "to": card.standing_proposed.value})
        return
    action = _DECIDED["rejected" if step.status == StepStatus.answered else step.status.value]
    earlier = db.exec(select(AuditEvent.data).where(AuditEvent.action == action, AuditEvent.entity_type == "vendor",
                                                    AuditEvent.entity_id == vendor.id))
    if not any(event.get("scorecard_id") == card.id for event in earlier):
        trail.record(db, actor=actor, action=action, entity_type="vendor", entity_id=vendor.id or 0, data=data)


@task(cache_policy=NO_CACHE)  # called again after every wait in the same run: it must read the registry afresh
def settle_decisions(period: str, vendor_ids: list[int]) -> list[int]:
    """Apply every decided change of standing (once); the steps still waiting for a decision."""
    pending: list[int] = []
    with session() as db:
        rows = db.exec(select(VendorScorecard, HumanStep, Vendor)
                       .join(HumanStep, col(HumanStep.id) == VendorScorecard.step_id)
                       .join(Vendor, col(Vendor.id) == VendorScorecard.vendor_id)
                       .where(VendorScorecard.period == period, col(VendorScorecard.vendor_id).in_(vendor_ids),
                              col(VendorScorecard.applied_at).is_(None))
                       .order_by(col(VendorScorecard.id)))
        for card, step, vendor in rows:
            if step.status == StepStatus.pending:
                pending.append(step.id or 0)
            else:
                _settle(db, card, step, vendor)
    return pending
