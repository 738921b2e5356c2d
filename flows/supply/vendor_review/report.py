"""What the vendor review shows: the period's scorecards as a Prefect table and an HTML report on its occasion."""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from sqlmodel import Session, col, select

from engine import occasions
from engine.answers import decision_of
from engine.reports import save_report
from engine.work import unit
from flows.supply.vendor_review import PROCESS, rules
from flows.supply.vendor_review.tasks import TEMPLATES, card_item
from registry import HumanStep, Occasion, Person, Vendor, VendorScorecard

ARTIFACT_KEY = "vendor-review-scorecards"


def _label(db: Session, card: VendorScorecard, step: HumanStep | None) -> str:
    decided = decision_of(db, step) if step is not None else None
    return rules.decision_label(deliveries=card.deliveries, before=card.standing_before,
                                proposed=card.standing_proposed, applied=card.applied_at is not None,
                                verdict=decided.verdict.value if decided else None)


def _period_rows(db: Session, period: str) -> list[dict[str, Any]]:
    """Every scorecard of the period (whichever run made it), with its vendor, owner and decision."""
    rows = db.exec(select(VendorScorecard, Vendor, Person, HumanStep)
                   .join(Vendor, col(Vendor.id) == VendorScorecard.vendor_id)
                   .join(Person, col(Person.id) == Vendor.owner_id)
                   .outerjoin(HumanStep, col(HumanStep.id) == VendorScorecard.step_id)
                   .where(VendorScorecard.period == period).order_by(col(Vendor.code)))
    return [{**card_item(vendor, card), "owner": owner.name, "standing_now": vendor.standing.value,
             "scored_at": card.created_at, "decision": _label(db, card, step)}
            for card, vendor, owner, step in rows]


def _percent_points(value: float | None) -> float | str:
    return "—" if value is None else round(value * 100, 1)


def _table(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"vendor": r["code"], "name": r["name"], "owner": r["owner"], "deliveries": r["deliveries"],
             "on-time %": _percent_points(r["on_time_rate"]), "fill %": _percent_points(r["fill_rate"]),
             "defect %": _percent_points(r["defect_rate"]), "price variance %": _percent_points(r["price_variance"]),
             "score": "—" if r["score"] is None else r["score"], "standing before": r["standing_before"],
             "proposed": r["standing_proposed"], "decision": r["decision"], "standing now": r["standing_now"]}
            for r in rows]


@task(cache_policy=NO_CACHE)  # published before and after the waits of one run, with the same inputs
def publish(review_id: int, thresholds: rules.Thresholds) -> str:
    """The period's scorecards as a Prefect table and an HTML report with a score chart, kept on the occasion."""
    with unit() as db:
        review = db.get(Occasion, review_id)
        assert review is not None
        period = review.key
        rows = _period_rows(db, period)
        saved = save_report(f"vendor-review-{period}.html", f"{TEMPLATES}/report.html", {
            "period": period, "rows": rows, "thresholds": thresholds.model_dump(),
            "scored_at": min((r["scored_at"] for r in rows), default=None)})
        # The report holds no clock time, so an unchanged review renders the same bytes and is recorded once.
        if review.report_sha256 != saved.sha256:
            occasions.record_report(db, review, saved)
    create_table_artifact(_table(rows), key=ARTIFACT_KEY,
                          description=f"Vendor scorecards {period}. Report: `{saved.path}` "
                                      f"(SHA-256 `{saved.sha256}`)")
    return saved.sha256


@task
def conclude(review_id: int, vendor_ids: list[int]) -> dict[str, int]:
    """How this run's changes of standing ended; the period's occasion closes once none awaits a decision."""
    with unit() as db:
        review = db.get(Occasion, review_id)
        assert review is not None
        cards = list(db.exec(select(VendorScorecard, HumanStep)
                             .outerjoin(HumanStep, col(HumanStep.id) == VendorScorecard.step_id)
                             .where(VendorScorecard.period == review.key)))
        labels = [_label(db, card, step) for card, step in cards if card.vendor_id in vendor_ids]
        if not any(card.step_id is not None and card.decided_at is None for card, _ in cards):
            occasions.close(db, review, actor=PROCESS.actor)
    unchanged = ("unchanged", "no deliveries: standing kept")
    return {"proposed": sum(label not in unchanged for label in labels), "approved": labels.count("approved"),
            "rejected": labels.count("rejected"), "expired": labels.count("expired") + labels.count("cancelled")}
