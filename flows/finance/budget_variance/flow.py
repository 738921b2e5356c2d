"""The monthly budget variance, from the owners' justifications to the director's sign-off of the pack."""

from __future__ import annotations

from prefect import get_run_logger
from prefect.runtime import flow_run
from pydantic import BaseModel, ConfigDict, Field

from engine import gate, runs
from engine.followups import follow_up
from engine.work import preview
from flows.finance.budget_variance import tasks
from registry.clock import as_utc, utcnow

RUNNER_PREFETCH_SECONDS = 30  # the runner starts a scheduled run this early: it waits for the deadline, not again


class BudgetParameters(BaseModel):
    model_config = ConfigDict(extra="forbid")  # an unknown parameter is refused, not silently ignored
    month: str = Field(
        "", title="Month", pattern=r"^(\d{4}-(0[1-9]|1[0-2]))?$",
        description="The month to review, like 2026-11 (the year to date runs from January). Empty: last month, "
                    "counted from the run's scheduled day.",
    )
    materiality_pct: float = Field(
        10, ge=0, le=1000, title="Materiality threshold (%)",
        description="An unfavourable variance is material when it is at least this share of the line's budget "
                    "and at least the amount below (a line with no budget: the amount alone).",
    )
    materiality_amount: int = Field(
        1000, ge=0, title="Materiality threshold (amount)",
        description="The smallest unfavourable variance, in the organisation's currency, that asks for a "
                    "justification.",
    )
    justification_days: int = Field(
        5, ge=1, le=30, title="Justification window (working days)",
        description="How long owners have to justify their material lines before the pack is built.",
    )
    justification_minutes: int = Field(
        0, ge=0, le=1440, title="Justification window in minutes (trial runs)",
        description="Overrides the working days, to try the whole process in minutes. 0: the working days apply.",
    )
    signoff_days: int = Field(3, ge=1, le=30, title="Sign-off window (working days)",
                              description="How long the director has to sign the variance pack off.")
    preview: bool = Field(False, title="Preview",
                          description="Render the justification requests; write and send nothing.")


class BudgetOutcome(BaseModel):
    month: str
    status: str
    lines: int = 0
    material: int = 0
    received: int = 0
    missing: int = 0
    findings: int = 0
    pack: str = ""
    pack_sha256: str = ""
    detail: str = ""


def _outcome(state: tasks.MonthState, detail: str, status: str | None = None) -> BudgetOutcome:
    return BudgetOutcome(month=state.month, status=status or state.phase, lines=state.lines, material=state.material,
                         received=state.received, missing=state.missing, findings=state.findings, pack=state.pack,
                         pack_sha256=state.pack_sha256, detail=detail)


@runs.process_flow("budget-variance")
def budget_variance(params: BudgetParameters) -> BudgetOutcome:
    """Monthly budget variance: budget, actual and committed per line, justified by each line's owner.

    For the month and the year to date, compares every cost centre's budget lines with the actuals booked and
    the purchase requests approved but not yet invoiced (committed), and forecasts the year. Each line whose
    unfavourable variance passes both materiality thresholds asks its cost centre's owner — one message per
    owner — for a justification from a link: the explanation, one-off or recurring, a revised forecast to year
    end, and a corrective action if one is needed. Unanswered, the sweep reminds the owner, then tells the cost
    centre's manager. At the deadline a follow-up run of this deployment builds the variance pack (HTML and PDF
    with a chart per cost centre, a CSV of every figure, a Prefect artifact) showing the justifications received
    and those missing, raises a corrective action for each justification that asks for one, and waits,
    suspended, for the director's sign-off. Safe to re-run: every step is keyed, so nothing is asked or sent twice.
    """
    logger = get_run_logger()
    month = tasks.month_of(params.month, flow_run.get_scheduled_start_time())
    asking = tasks.Asking(month=month, materiality_pct=params.materiality_pct,
                          materiality_amount=params.materiality_amount, days=params.justification_days,
                          minutes=params.justification_minutes)
    if params.preview:
        with preview(f"Justification requests, budget variance {month}") as shown:
            state = tasks.open_month.fn(asking, params.model_dump(mode="json"))
        return _outcome(state, f"{state.material} material line(s): {len(shown.messages)} justification "
                               "request(s) rendered as an artifact; nothing sent", status="preview")

    state = tasks.open_month(asking, params.model_dump(mode="json"))
    if state.phase == tasks.NO_DATA:
        return _outcome(state, f"nothing is budgeted, booked or committed in {month[:4]}: import cost centres, "
                               "budget lines and actuals (ops import cost-centres|budget-lines|actuals), then run "
                               "again")
    if state.phase == "closed":
        return _outcome(state, "already signed off")
    if state.phase == "collecting":
        logger.info("%s material line(s) of %s; %s justification(s) asked by this run", state.material, state.lines,
                    state.asked)
        if (as_utc(state.due_at) - utcnow()).total_seconds() > RUNNER_PREFETCH_SECONDS:
            return _outcome(state, follow_up(
                key=f"budget-variance-{state.occasion_id}-pack", at=state.due_at,
                parameters=params.model_copy(update={"month": month}).model_dump(mode="json"),
                run_name=f"variance pack {month}"))

    step_id = state.signoff_step_id
    if state.phase in ("collecting", "changes_requested"):
        step_id = tasks.pack_for_signoff(state.occasion_id, state.phase, params.signoff_days, asking)
        if step_id is None:
            return _outcome(state, "another run is building this month's pack at the same moment")
    assert step_id is not None, f"budget variance {month} awaits a sign-off without a step"

    decided = gate.wait(step_id)
    if isinstance(decided, gate.HeldElsewhere):
        logger.warning("Nothing to do: the sign-off is %s", decided.detail)
        return _outcome(state, f"the sign-off is {decided.detail}", status="awaiting_signoff")
    logger.info("Sign-off step %s: %s", step_id, decided.verdict.value)
    settled = tasks.apply_signoff(state.occasion_id, decided, asking)
    detail = f"sign-off {decided.verdict.value}"
    if settled.phase == "changes_requested":
        # The owners were told when the pack is rebuilt: that run is this deployment's, keyed by the round.
        detail += "; new round: " + follow_up(
            key=f"budget-variance-{state.occasion_id}-rebuild-{step_id}", at=settled.due_at,
            parameters=params.model_copy(update={"month": month}).model_dump(mode="json"),
            run_name=f"variance pack {month}, new round")
    return _outcome(settled, detail)
