"""How the vendor review shows scorecards: message items, the Prefect table and the HTML report."""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from sqlmodel import Session, col, select

from engine.reports import save_report
from flows.supply.vendor_review import rules
from registry import AuditEvent, HumanStep, Person, Vendor, VendorScorecard, session, trail

ARTIFACT_KEY = "vendor-review-scorecards"


def card_item(vendor: Vendor, card: VendorScorecard) -> dict[str, Any]:
    """What messages and reports say of one scorecard."""
    return {"code": vendor.code, "name": vendor.name, "deliveries": card.deliveries,
            "on_time_rate": card.on_time_rate, "fill_rate": card.fill_rate, "defect_rate": card.defect_rate,
            "price_variance": card.price_variance, "score": card.score,
            "standing_before": card.standing_before.value, "standing_proposed": card.standing_proposed.value}


def decision(card: VendorScorecard, step: HumanStep | None) -> str:
    return rules.decision_label(deliveries=card.deliveries, before=card.standing_before,
                                proposed=card.standing_proposed, applied=card.applied_at is not None,
                                step_status=step.status.value if step else None,
                                answer=(step.answer or {}).get("decision") if step else None)


def period_number(period: str) -> int:
    """2026-Q3 → 20263: a review has no row of its own, so its trail events are keyed by the period."""
    year, quarter = period.upper().split("-Q")
    return int(year) * 10 + int(quarter)


def period_rows(db: Session, period: str) -> list[dict[str, Any]]:
    """Every scorecard of the period (whichever run made it), with its vendor, owner and decision."""
    rows = db.exec(select(VendorScorecard, Vendor, Person, HumanStep)
                   .join(Vendor, col(Vendor.id) == VendorScorecard.vendor_id)
                   .join(Person, col(Person.id) == Vendor.owner_id)
                   .outerjoin(HumanStep, col(HumanStep.id) == VendorScorecard.step_id)
                   .where(VendorScorecard.period == period).order_by(col(Vendor.code)))
    return [{**card_item(vendor, card), "owner": owner.name, "standing_now": vendor.standing.value,
             "scored_at": card.created_at, "decision": decision(card, step)}
            for card, vendor, owner, step in rows]


def _percent_points(value: float | None) -> float | str:
    return "—" if value is None else round(value * 100, 1)


def table(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"vendor": r["code"], "name": r["name"], "owner": r["owner"], "deliveries": r["deliveries"],
             "on-time %": _percent_points(r["on_time_rate"]), "fill %": _percent_points(r["fill_rate"]),
             "defect %": _percent_points(r["defect_rate"]), "price variance %": _percent_points(r["price_variance"]),
             "score": "—" if r["score"] is None else r["score"], "standing before": r["standing_before"],
             "proposed": r["standing_proposed"], "decision": r["decision"], "standing now": r["standing_now"]}
            for r in rows]


@task(cache_policy=NO_CACHE)  # published before and after the waits of one run, with the same inputs
def publish(period: str, thresholds: rules.Thresholds) -> str:
    """The period's scorecards as a Prefect table and an HTML report with a score chart; its SHA-256 in the trail."""
    with session() as db:
        rows = period_rows(db, period)
        report = save_report(f"vendor-review-{period}.html", "supply/vendor_review/report.html", {
            "period": period, "rows": rows, "thresholds": thresholds.model_dump(),
            "scored_at": min((r["scored_at"] for r in rows), default=None)})
        digest, path = report.sha256, report.path
        # The report holds no clock time, so an unchanged review renders the same bytes and is recorded once.
        earlier = db.exec(select(AuditEvent.data).where(AuditEvent.action == "vendor_review.report_built",
                                                        AuditEvent.entity_id == period_number(period)))
        if not any(event.get("sha256") == digest for event in earlier):
            trail.record(db, actor=rules.ACTOR, action="vendor_review.report_built", entity_type="vendor_review",
                         entity_id=period_number(period), data={"period": period, "sha256": digest,
                                                                "path": str(path)})
    create_table_artifact(table(rows), key=ARTIFACT_KEY,
                          description=f"Vendor scorecards {period}. Report: `{path}` (SHA-256 `{digest}`)")
    return digest
