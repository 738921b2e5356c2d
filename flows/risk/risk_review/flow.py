"""The risk review: owners re-score their risks from a link; the Director accepts or treats what is above appetite."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from engine import gate, runs
from engine.followups import follow_up
from engine.parameters import OneOf
from engine.work import preview
from flows.risk.risk_review import report, tasks
from flows.risk.risk_review.forms import AppetiteDecision
from registry.clock import as_utc, utcnow

RUNNER_PREFETCH_SECONDS = 30  # the runner starts a scheduled run this early: it waits for the deadline, not again


class ReviewParameters(BaseModel):
    model_config = ConfigDict(extra="forbid")  # an unknown parameter is refused, not silently ignored
    risk_code: Annotated[str, OneOf("risk")] = Field(
        "", title="Risk code", max_length=40,
        description="Review only this risk, whatever its cadence. Empty: every active risk due by its level's "
                    "review cadence in the period.")
    category: Annotated[str, OneOf("risk category")] = Field(
        "", title="Category code", max_length=40,
        description="Review every active risk of this category, whatever their cadence. Empty: every category.")
    period: str = Field(
        "", title="Period", description="Quarter of the review, like 2026-Q4. Empty: the current quarter.",
        pattern=r"^(\d{4}-[Qq][1-4])?$")
    rescore_days: int = Field(
        5, ge=1, le=30, title="Re-score window (working days)",
        description="How long owners have to confirm or re-score before the Director is asked about what is above "
                    "appetite (owners are reminded, then their managers told).")
    rescore_minutes: int = Field(
        0, ge=0, le=1440, title="Re-score window in minutes (trial runs)",
        description="Overrides the working days, to try the whole review in minutes. 0: the working days apply.")
    decision_days: int = Field(
        5, ge=1, le=30, title="Decision window (working days)",
        description="How long the Director has to accept or treat each risk above its category's appetite.")
    request: str = Field(
        "", title="Re-score request", max_length=120,
        description="Set by risk-review-dispatch: the KRI breach or expired acceptance this review answers. "
                    "Empty for a review started by schedule or by hand.")
    preview: bool = Field(False, title="Preview",
                          description="Render the re-score requests that would be sent; write and send nothing.")


class ReviewOutcome(BaseModel):
    occasion_id: int | None
    key: str
    status: str
    risks: int = 0
    rescored: int = 0
    above_appetite: int = 0
    accepted: int = 0
    treated: int = 0
    report_pdf: str = ""
    detail: str = ""


@runs.process_flow("risk-review")
def risk_review(params: ReviewParameters) -> ReviewOutcome:
    """Quarterly risk review: owners confirm or re-score their risks; the Director decides what is above appetite.

    Opens the review for every active risk due by its level's review cadence in the quarter (or the one risk, or
    the category, asked; or the KRI breach or expired acceptance the daily risk-review-dispatch found) and sends
    each owner one digest of re-score links showing the last score, the latest values of the risk's key risk
    indicators and the findings raised on its controls since the last review. A re-score takes effect as it is
    answered (a new assessment, the next review by the new level's cadence, any acceptance given for the old
    score voided). At the deadline a follow-up run asks the Director, through a gate, to accept until a date or to
    treat every risk whose residual level is above its category's appetite without a valid acceptance; a
    treatment becomes a corrective action for the person named. It then writes the report (heat maps of inherent
    and residual risk with each risk's move, the register, the top risks above appetite) as HTML and PDF and a
    Prefect artifact, and closes the review. Safe to re-run: every request is keyed, nothing is asked twice.
    """
    scope = tasks.Scope(risk_code=params.risk_code.strip(), category=params.category.strip(),
                        period=params.period.upper(), request=params.request.strip())
    window = (params.rescore_days, params.rescore_minutes or None)
    if params.preview:
        with preview("Risk review: the re-score requests") as shown:
            opened = tasks.open_review.fn(scope, *window, params.model_dump(mode="json"))
            tasks.ask_rescores.fn(opened)
        return ReviewOutcome(occasion_id=None, key=opened.key, status="preview", risks=opened.risks,
                             detail=f"{len(shown.messages)} re-score request(s) rendered as an artifact; nothing sent")

    state = tasks.open_review(scope, *window, params.model_dump(mode="json"))
    if state.phase == "closed":  # a re-run, or a second review of one risk or category in the same quarter
        print(f"{state.key}: reviewed and closed already (its report stands); nothing is asked again")
        return _outcome(state, "already reviewed")
    if state.phase == "collecting":
        print(f"Re-scores asked of {tasks.ask_rescores(state)} owner(s) for {state.risks} risk(s)")
        # Nothing to re-score (no risk due): the Director is asked about what is above appetite at once.
        if state.risks and (as_utc(state.rescore_due_at) - utcnow()).total_seconds() > RUNNER_PREFETCH_SECONDS:
            return _outcome(state, follow_up(
                key=f"risk-review-{runs.registry_id()}-{state.occasion_id}-decide", at=state.rescore_due_at,
                parameters=params.model_copy(update={"period": state.period}).model_dump(mode="json"),
                run_name=f"decide {state.key}"))
        tasks.ask_director(state, params.decision_days)

    held: tuple[int, ...] = ()
    while (asked := tasks.next_decision(state, held)) is not None:
        answered = gate.wait_for(asked.step_id, AppetiteDecision)
        if isinstance(answered, gate.HeldElsewhere):
            if asked.ours:  # a duplicate run of this review: the one waiting finishes it
                return _outcome(state, f"the Director's decision is {answered.detail}")
            held += (asked.step_id,)  # another review's question on one of our risks: its run settles it
            continue
        print(f"Appetite decision, step {asked.step_id}: {tasks.settle_decision(asked.step_id)}")

    built = report.publish(state)
    return _outcome(tasks.close_review(state), "reviewed", built)


def _outcome(state: tasks.ReviewState, detail: str, built: report.Built | None = None) -> ReviewOutcome:
    return ReviewOutcome(occasion_id=state.occasion_id, key=state.key, status=state.phase, risks=state.risks,
                         rescored=state.rescored, above_appetite=state.above_appetite, accepted=state.accepted,
                         treated=state.treated, report_pdf=built.pdf if built else "", detail=detail)
