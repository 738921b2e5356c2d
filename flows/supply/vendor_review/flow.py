"""The quarterly vendor review: scorecards from deliveries, changes of standing the procurement manager approves."""

from __future__ import annotations

from prefect.runtime import flow_run
from pydantic import BaseModel, ConfigDict, Field

from engine import gate, runs
from engine.work import preview
from flows.supply.vendor_review import report, rules, tasks


class ReviewParameters(BaseModel):
    model_config = ConfigDict(extra="forbid")  # an unknown parameter is refused, not silently ignored
    vendor_code: rules.VendorCode = Field(
        "", title="Vendor code",
        description="Review only this vendor, whatever its cadence. Empty: every active vendor due by its review "
                    "cadence in the period.",
    )
    period: str = Field(
        "", title="Period", description="Quarter to review, like 2026-Q3. Empty: the quarter that just ended.",
        pattern=r"^(\d{4}-[Qq][1-4])?$",
    )
    weights: rules.Weights = Field(default_factory=rules.Weights, title="Score weights",
                                   description="Relative weight of each component of the score.")
    thresholds: rules.Thresholds = Field(default_factory=rules.Thresholds, title="Standing thresholds",
                                         description="The lowest score for each standing.")
    approval_days: int = Field(
        5, ge=1, le=30, title="Approval window (working days)",
        description="How long the procurement manager has to approve or reject each change of standing.",
    )
    preview: bool = Field(False, title="Preview", description="Render what would be sent; write and send nothing.")

class ReviewOutcome(BaseModel):
    period: str
    status: str
    vendors: int = 0
    scored: int = 0
    proposed: int = 0
    approved: int = 0
    rejected: int = 0
    expired: int = 0
    report_sha256: str | None = None
    detail: str = ""


@runs.process_flow("vendor-review")
def vendor_review(params: ReviewParameters) -> ReviewOutcome:
    """Quarterly vendor review: scorecards from the period's deliveries, approved changes of standing.

    For one vendor, or every vendor due by its review cadence in the period, computes the on-time, fill, defect
    and price-variance rates, a weighted score and the standing it earns, and sends each vendor owner one digest
    of their vendors' scorecards. A change of standing waits for the procurement manager's approval from a link
    (one message listing every change); a fall to probation or worse, once approved, is a finding with a
    corrective action for the vendor's owner. The review period is an occasion holding the HTML report (score
    chart) and its SHA-256; the scorecards are a Prefect table. Safe to re-run: every step is keyed, so nothing
    is scored, asked or sent twice. Contract-end notices are the daily vendor-contract-notices deployment.
    """
    period = tasks.period_of(params.period, flow_run.get_scheduled_start_time())
    vendor_ids = tasks.vendors_due(params.vendor_code, period)
    if params.preview:
        return _preview(params, period, vendor_ids)

    review = tasks.open_review(period)
    totals = tasks.measure(period, vendor_ids)
    scored = tasks.record_scorecards(params.weights, params.thresholds, period, vendor_ids, totals)
    asked = tasks.ask_standing_changes(review, period, vendor_ids, params.approval_days)
    print(f"Vendors {len(vendor_ids)}: {scored} newly scored, {asked} change(s) of standing asked")

    pending = tasks.settle(period, vendor_ids)
    sha256 = report.publish(review, params.thresholds)
    for step_id in pending:
        decided = gate.wait(step_id)
        if isinstance(decided, gate.HeldElsewhere):  # a duplicate run: the holder settles the rest
            return ReviewOutcome(period=period, status="held elsewhere", vendors=len(vendor_ids), scored=scored,
                                 report_sha256=sha256, detail=f"change of standing, step {step_id}: {decided.detail}")
        print(f"Change of standing, step {step_id}: {decided.verdict.value}")
        tasks.settle(period, vendor_ids)
    if pending:
        sha256 = report.publish(review, params.thresholds)

    counts = report.conclude(review, vendor_ids)
    return ReviewOutcome(period=period, status="reviewed", vendors=len(vendor_ids), scored=scored,
                         report_sha256=sha256, **counts,
                         detail=f"{counts['proposed']} change(s) of standing: {counts['approved']} approved, "
                                f"{counts['rejected']} rejected, {counts['expired']} expired")


def _preview(params: ReviewParameters, period: str, vendor_ids: list[int]) -> ReviewOutcome:
    """The real path up to the approvals, rendered as an artifact and rolled back (no report is written)."""
    with preview(f"Preview of the vendor review {period}") as shown:
        review = tasks.open_review.fn(period)
        totals = tasks.measure.fn(period, vendor_ids)
        scored = tasks.record_scorecards.fn(params.weights, params.thresholds, period, vendor_ids, totals)
        asked = tasks.ask_standing_changes.fn(review, period, vendor_ids, params.approval_days)
    return ReviewOutcome(period=period, status="preview", vendors=len(vendor_ids),
                         detail=f"{scored} scorecard(s), {asked} change(s) of standing in {len(shown.messages)} "
                                "message(s) rendered as an artifact; nothing sent")
