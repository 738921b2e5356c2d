"""The budget variance's tasks: each loads, calls the rules, stores and queues inside one unit of work."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from datetime import time as clock
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from prefect import task
from prefect.cache_policies import NO_CACHE
from sqlalchemy import func
from sqlmodel import Session, col, select

from engine import gate, occasions, periods, runs
from engine.answers import Decision, answer_of
from engine.deadlines import answer_window, working_days_from_now
from engine.findings import ActionSpec, Origin, raise_finding
from engine.formats import money, money_detail, percent
from engine.human_steps import ATTACHMENT
from engine.once import insert_ignoring_conflicts
from engine.reports import SavedReport
from engine.settings import get_settings
from engine.work import Digest, unit
from flows.finance.budget_variance import ledger, report, rules
from flows.finance.budget_variance.forms import BudgetJustification
from registry import (
    BudgetExplanation,
    CostCentre,
    Criticality,
    HumanStep,
    Occasion,
    OccasionStatus,
    Person,
    StepStatus,
    trail,
)
from registry.clock import as_utc, utcnow
from registry.people import person_with_role

PROCESS = ACTOR = "budget-variance"
TEMPLATES = "finance/budget_variance"
SUBJECT = "budget_explanation"  # a justification step's subject, and a finding's origin: the line's explanation
CODE = "overspend"  # an explanation has one finding: the corrective action its owner asked for
FORM = "budget_justification"
DIRECTOR = "director"  # the role that signs the pack off
NO_DATA = "no data"  # the phase of a month whose year holds no budget, actual or commitment


@dataclass(frozen=True)
class Asking:
    """What the opening run asks with: the month, the materiality thresholds and the justification window."""

    month: str  # 2026-11
    materiality_pct: float
    materiality_amount: int
    days: int
    minutes: int = 0


@dataclass(frozen=True)
class MonthState:
    """Where a month's variance stands, for the flow to decide what comes next (the phase is its occasion's)."""

    occasion_id: int
    month: str
    phase: str
    due_at: datetime  # the justifications' deadline
    lines: int
    material: int  # justifications asked
    asked: int = 0  # of which by this run
    received: int = 0
    missing: int = 0
    findings: int = 0
    signoff_step_id: int | None = None
    pack: str = ""
    pack_sha256: str = ""


def month_of(asked: str, scheduled: datetime | None) -> str:
    """The month asked for, or the one before the run's scheduled day (in the organisation's calendar)."""
    if asked:
        return asked
    return periods.month_of(periods.today(at=scheduled)).previous().name


def _period(month: str) -> periods.Period:
    return periods.parse(month, periods.today())


def _share(pct: float | None) -> float | None:
    """The rules' percentage as the share the `percent` filter shows (12.5 → 0.125)."""
    return None if pct is None else pct / 100


def _occasion(db: Session, occasion_id: int) -> Occasion:
    occasion = db.get(Occasion, occasion_id)
    if occasion is None:
        raise ValueError(f"budget variance occasion {occasion_id} does not exist")
    return occasion


def _first_day(occasion: Occasion) -> date:
    return _period(occasion.key).start


def _deadline(db: Session, occasion: Occasion) -> datetime | None:
    """The justifications' deadline, the occasion's (None: nothing asked yet); a month opened before occasions
    held one reads the deadline its steps were asked with."""
    if occasion.due_at is not None:
        return as_utc(occasion.due_at)
    due = db.exec(select(func.min(HumanStep.due_at)).join(BudgetExplanation, col(BudgetExplanation.step_id)
                                                          == HumanStep.id)
                  .where(BudgetExplanation.occasion_id == occasion.id)).one()
    return as_utc(due) if due is not None else None


def _new_deadline(asking: Asking, now: datetime) -> tuple[datetime, datetime]:
    """When justifications are due, and when their links die after the escalation's grace."""
    if asking.minutes:
        due = as_utc(now) + timedelta(minutes=asking.minutes)
        return due, working_days_from_now(get_settings().escalation_grace_days, start=due)
    return answer_window(asking.days)


def _line_item(v: rules.Variance) -> dict[str, Any]:
    """What the owner's message says of one material line."""
    line = v.line
    return {"cost_centre": line.cost_centre, "cost_centre_name": line.cost_centre_name, "account": line.account,
            "kind": line.kind, "budget": line.budget, "actual": line.actual, "variance": v.amount,
            "variance_share": _share(v.pct), "ytd_variance": v.ytd_amount, "ytd_variance_share": _share(v.ytd_pct)}


def _details(v: rules.Variance, label: str) -> dict[str, Any]:
    """The facts of one line, shown on its justification page beside the form."""
    line = v.line
    return {"cost centre": f"{line.cost_centre} {line.cost_centre_name}".strip(), "account": line.account,
            "line": line.kind, "month": label, "budget this month": money_detail(line.budget),
            "actual this month": money_detail(line.actual), "variance this month": money_detail(v.amount),
            "variance this month %": percent(_share(v.pct)), "budget year to date": money_detail(line.budget_ytd),
            "actual year to date": money_detail(line.actual_ytd),
            "variance year to date": money_detail(v.ytd_amount),
            "committed (approved, not invoiced)": money_detail(v.committed),
            "budget for the year": money_detail(line.budget_year),
            "forecast to year end (actuals + budget of the months left)": money_detail(v.forecast)}


def _title(v: rules.Variance, label: str) -> str:
    line, over = v.line, v.amount > 0
    return (f"Justify {line.cost_centre} {line.account}: {money(abs(v.amount))} {'over' if over else 'under'} "
            f"budget in {label}")


def _ask(db: Session, occasion: Occasion, asking: Asking, lines: list[rules.LineFigures]) -> int:
    """A justification step for every material line not asked before, in one message per owner; how many asked.

    Asked only while the deadline is ahead: a line found material after it waits for next month's review."""
    now = utcnow()
    label = _period(asking.month).label
    material = [v for v in map(rules.variance, lines)
                if rules.material(v, asking.materiality_pct, asking.materiality_amount)]
    asked = {(cc, account) for cc, account in db.exec(
        select(BudgetExplanation.cost_centre_id, BudgetExplanation.account)
        .where(BudgetExplanation.month == _first_day(occasion)))}
    new = [v for v in material if (v.line.cost_centre_id, v.line.account) not in asked]
    due = _deadline(db, occasion)
    final = None
    if due is None:
        due, final = _new_deadline(asking, now)
    if not new or due <= now:
        return 0
    if final is not None and not occasions.set_due(db, occasion, due):
        # A concurrent run set the month's deadline first: the lines this run asks are due then too.
        due, final = as_utc(occasion.due_at or due), None
    if final is None:
        final = working_days_from_now(get_settings().escalation_grace_days, start=due)
    first = _first_day(occasion)
    rows = [{"occasion_id": occasion.id, "month": first, "cost_centre_id": v.line.cost_centre_id,
             "account": v.line.account, "variance": v.amount, "variance_pct": v.pct, "created_at": now}
            for v in new]
    db.flush()
    # One INSERT … ON CONFLICT DO NOTHING RETURNING: of two runs asking at once, each line is asked by one.
    created = {(e.cost_centre_id, e.account): e for e in db.scalars(
        insert_ignoring_conflicts(db, BudgetExplanation).returning(BudgetExplanation), rows)}
    if not created:
        return 0
    centres = {c.id: c for c in db.exec(select(CostCentre).where(
        col(CostCentre.id).in_({cc for cc, _ in created})))}
    asks = Digest(key=f"budget-variance-{asking.month}-justifications-{min(e.id or 0 for e in created.values())}",
                  template=f"{TEMPLATES}/justification_request", items_as="lines",
                  context={"month": {"key": asking.month, "label": label}, "due_at": due,
                           "materiality": {"pct": asking.materiality_pct / 100,
                                           "amount": Decimal(asking.materiality_amount)}})
    for v in new:
        explanation = created.get((v.line.cost_centre_id, v.line.account))
        if explanation is None:
            continue
        centre = centres[v.line.cost_centre_id]
        step = asks.ask(db, item=_line_item(v), key=f"budget-explanation-{explanation.id}-justification",
                        person_id=centre.owner_id, form=FORM, title=_title(v, label), subject_type=SUBJECT,
                        subject_id=explanation.id or 0, due_at=due, expires_at=final, details=_details(v, label),
                        actor=ACTOR, escalate_to=(centre.manager_id,) if centre.manager_id else ())
        explanation.step_id = step.id
        db.add(explanation)
    asks.queue(db)
    trail.record(db, actor=ACTOR, action="budget_variance.asked", entity_type="occasion", entity_id=occasion.id or 0,
                 data={"month": asking.month,
                       "lines": sorted(f"{centres[cc].code}/{account}" for cc, account in created),
                       "due_at": due.isoformat(), "materiality_pct": asking.materiality_pct,
                       "materiality_amount": asking.materiality_amount})
    return len(created)


def _state(db: Session, occasion: Occasion, lines: int, asked: int = 0) -> MonthState:
    steps = list(db.exec(select(BudgetExplanation.finding_id, HumanStep.status)
                         .outerjoin(HumanStep, col(HumanStep.id) == BudgetExplanation.step_id)
                         .where(BudgetExplanation.occasion_id == occasion.id)))
    received = sum(status == StepStatus.answered for _, status in steps)
    return MonthState(occasion_id=occasion.id or 0, month=occasion.key, phase=occasion.phase,
                      due_at=_deadline(db, occasion) or utcnow(), lines=lines, material=len(steps), asked=asked,
                      received=received, missing=len(steps) - received,
                      findings=sum(finding is not None for finding, _ in steps),
                      signoff_step_id=occasion.signoff_step_id, pack=occasion.report_path or "",
                      pack_sha256=occasion.report_sha256 or "")


@task
def open_month(asking: Asking, parameters: dict[str, Any] | None = None) -> MonthState:
    """The month's occasion (opened by whichever run comes first, keeping that run's `parameters`) and, while it
    collects, a justification asked of the owner for every material line not asked yet: one message per owner."""
    period = _period(asking.month)
    start, end = period.bounds(get_settings().timezone)
    with unit() as db:
        lines = ledger.figures(db, period.start)
        if not lines and occasions.find(db, PROCESS, asking.month) is None:
            # Nothing booked or budgeted in the year: no occasion to open, nobody to ask, no pack to sign.
            return MonthState(occasion_id=0, month=asking.month, phase=NO_DATA, due_at=utcnow(), lines=0, material=0)
        occasion, _ = occasions.open_occasion(
            db, process=PROCESS, key=asking.month, title=f"Budget variance {period.label}", period_start=start,
            period_end=end, flow_run_id=runs.current_run_id(), status=OccasionStatus.collecting, phase="collecting",
            parameters=parameters)
        asked = _ask(db, occasion, asking, lines) if occasion.phase == "collecting" else 0
        db.flush()
        return _state(db, occasion, len(lines), asked)


def _names(db: Session, ids: set[int]) -> dict[int, str]:
    return {p.id or 0: p.name for p in db.exec(select(Person).where(col(Person.id).in_(ids)))} if ids else {}


def _escalation(step: HumanStep, owner: Person | None, names: dict[int, str]) -> tuple[str, ...]:
    """Whom the sweep tells of an overdue justification: the owner's manager and the cost centre's manager."""
    wanted = ([owner.manager_id] if owner and owner.manager_id else []) + list(step.escalate_to or [])
    return tuple(dict.fromkeys(names[i] for i in wanted if i in names and i != step.person_id))


def _justifications(db: Session, occasion: Occasion) -> list[tuple[report.Justification, BudgetExplanation]]:
    """The month's justifications as the pack shows them, with the rows they come from, in line order."""
    rows = list(db.exec(select(BudgetExplanation, CostCentre, HumanStep)
                        .join(CostCentre, col(CostCentre.id) == BudgetExplanation.cost_centre_id)
                        .join(HumanStep, col(HumanStep.id) == BudgetExplanation.step_id)
                        .where(BudgetExplanation.occasion_id == occasion.id)
                        .order_by(col(CostCentre.code), col(BudgetExplanation.account))))
    people = {p.id: p for p in db.exec(select(Person).where(col(Person.id).in_(
        {c.owner_id for _, c, _ in rows} | {s.person_id for _, _, s in rows})))} if rows else {}
    wanted = {i for _, _, s in rows for i in (s.escalate_to or [])}
    wanted |= {p.manager_id for p in people.values() if p.manager_id}
    wanted |= {s.answered_by_id for _, _, s in rows if s.answered_by_id}
    names = _names(db, wanted) | {p.id or 0: p.name for p in people.values()}
    found = []
    for explanation, centre, step in rows:
        owner = people.get(centre.owner_id)
        answered_by = step.answered_by_id if step.answered_by_id not in (None, step.person_id) else None
        found.append((report.Justification(
            cost_centre_id=centre.id or 0, cost_centre=centre.code, cost_centre_name=centre.name,
            account=explanation.account, owner=names.get(centre.owner_id, ""), variance=explanation.variance,
            variance_pct=explanation.variance_pct, asked_at=as_utc(step.created_at), due_at=as_utc(step.due_at),
            answer=answer_of(step, BudgetJustification),
            answered_by=names.get(answered_by or 0, ""), answered_at=step.answered_at,
            escalation=_escalation(step, people.get(step.person_id) or owner, names),
            escalated=step.escalation_level > 0,
            status=step.status.value), explanation))
    return found


def _action_due(day: date) -> datetime:
    """The end of the owner's working day on the date they gave, in the organisation's time zone."""
    return as_utc(datetime.combine(day, clock(17), ZoneInfo(get_settings().timezone)))


def _raise_actions(db: Session, occasion: Occasion,
                   justified: list[tuple[report.Justification, BudgetExplanation]]) -> list[report.Justification]:
    """A finding with a corrective action (the owner's, due when they said) for every justification asking for
    one, verified by the cost centre's manager; the owners told in one message each. The justifications again,
    the actions raised now marked on theirs."""
    label = _period(occasion.key).label
    told = Digest(key=f"budget-variance-{occasion.key}-actions-r{occasion.signoff_round + 1}",
                  template=f"{TEMPLATES}/corrective_actions", context={"month": {"key": occasion.key, "label": label}},
                  items_as="actions")
    marked = []
    for shown, explanation in justified:
        answer = shown.answer
        if answer is None or not answer.corrective_action_needed or answer.action_due is None:
            marked.append(shown)
            continue
        centre = db.get(CostCentre, explanation.cost_centre_id)
        assert centre is not None
        owner = db.get(Person, centre.owner_id)
        verifier = centre.manager_id or (owner.manager_id if owner else None)
        severity = Criticality(rules.severity(explanation.variance_pct))
        over = "over" if explanation.variance > 0 else "under"
        raised = raise_finding(
            db, origin=Origin(SUBJECT, explanation.id or 0), code=CODE, severity=severity, actor=ACTOR,
            process=PROCESS, occasion_id=occasion.id, verifier_id=verifier,
            description=f"{centre.code} {centre.name} · {explanation.account}: {money(abs(explanation.variance))} "
                        f"{over} budget in {label}" + (f" ({percent(abs(explanation.variance_pct) / 100)})"
                                                       if explanation.variance_pct is not None else ""),
            action=ActionSpec(owner_id=centre.owner_id, description=answer.action_description,
                              due_at=_action_due(answer.action_due)))
        if explanation.finding_id != raised.finding.id:
            explanation.finding_id = raised.finding.id
            db.add(explanation)
        if raised.created and raised.action is not None and raised.step is not None:
            told.add(raised.action.owner_id, {"cost_centre": centre.code, "account": explanation.account,
                                              "description": raised.action.description,
                                              "due_at": raised.action.due_at, "step_id": raised.step.id})
        due = raised.action.due_at if raised.action is not None else None
        marked.append(report.Justification(**{**shown.__dict__, "action_due": due,
                                              "action_severity": raised.finding.severity.value}))
    told.queue(db)
    return marked


@task
def pack_for_signoff(occasion_id: int, phase: str, signoff_days: int, asking: Asking) -> int | None:
    """At the deadline: the corrective actions asked for, the variance pack (HTML, PDF, CSV, artifacts) and the
    director asked to sign it off (the current run is the one that waits); the sign-off step's id. Claimed from
    `phase` first: of two runs at the same moment one does it all, the other gets None."""
    with unit() as db:
        occasion = _occasion(db, occasion_id)
        director = person_with_role(db, DIRECTOR)
        if director is None:
            raise ValueError(f"no person has the role {DIRECTOR!r}, so nobody can sign the variance pack off: give "
                             "the role to the finance director and run again")
        # The runner starts a scheduled run a few seconds early; waited before the claim holds any lock.
        due = _deadline(db, occasion)
        if due is not None:
            time.sleep(max(0.0, (due - utcnow()).total_seconds()))
        if not occasions.claim_phase(db, occasion_id, phase, "awaiting_signoff"):
            return None
        period = _period(occasion.key)
        round_no = occasion.signoff_round + 1
        justified = _justifications(db, occasion)
        shown = _raise_actions(db, occasion, justified)
        forecasts = {(j.cost_centre_id, j.account): j.answer.revised_forecast for j in shown if j.answer}
        variances = [rules.variance(line, forecasts.get((line.cost_centre_id, line.account)))
                     for line in ledger.figures(db, period.start)]
        centres = list(db.exec(select(CostCentre)))
        owners = _names(db, {c.owner_id for c in centres})
        materiality = {"pct": asking.materiality_pct / 100, "amount": Decimal(asking.materiality_amount)}
        contents = report.contents(period, variances, shown, {c.id or 0: owners.get(c.owner_id, "") for c in centres},
                                   round_no, utcnow(), materiality)
        files = report.build(contents)
        occasions.record_report(db, occasion, SavedReport(path=files.pdf, sha256=files.pdf_sha256))
        summary = contents.summary()
        signoff_due, final = answer_window(signoff_days)
        step = gate.ask(
            db, key=f"budget-variance-{occasion_id}-signoff-{round_no}", approver_id=director.id or 0,
            title=f"Sign off the budget variance pack {period.label}", subject_type="occasion",
            subject_id=occasion_id, due_at=signoff_due, expires_at=final, template=f"{TEMPLATES}/signoff_request",
            context={"month": {"key": occasion.key, "label": period.label}, "summary": summary}, actor=ACTOR,
            details={"month": period.label, "round": round_no,
                     "expenses this month": money_detail(summary["expense_actual"]),
                     "budget this month": money_detail(summary["expense_budget"]),
                     "expenses year to date": money_detail(summary["expense_actual_ytd"]),
                     "budget year to date": money_detail(summary["expense_budget_ytd"]),
                     "material lines": summary["material"], "justifications received": summary["received"],
                     "justifications missing": summary["missing"], "corrective actions": summary["findings"],
                     "pack (PDF) SHA-256": files.pdf_sha256, ATTACHMENT: str(files.html)})
        occasions.set_status(db, occasion, OccasionStatus.awaiting_signoff, actor=ACTOR)
        occasion.signoff_step_id, occasion.signoff_round = step.id, round_no
        db.add(occasion)
        trail.record(db, actor=ACTOR, action="budget_variance.pack", entity_type="occasion", entity_id=occasion_id,
                     data={"month": occasion.key, "round": round_no, "pdf_sha256": files.pdf_sha256,
                           "html_sha256": files.html_sha256, "csv_sha256": files.csv_sha256,
                           "pdf": str(files.pdf), "csv": str(files.csv), "step_id": step.id,
                           "received": summary["received"], "missing": summary["missing"]})
        step_id = step.id
    report.publish(contents, files)
    return step_id


@task(cache_policy=NO_CACHE)
def apply_signoff(occasion_id: int, decided: Decision, asking: Asking) -> MonthState:
    """Approved: the month closes with the pack's hash in the trail. Rejected or expired: changes are requested
    (the owners of material lines told the director's comment and when the pack is rebuilt: one justification
    window from now, the state's `due_at`, for the flow to schedule the new round's run)."""
    rebuild_at, _ = _new_deadline(asking, utcnow())
    with unit() as db:
        occasion = _occasion(db, occasion_id)
        lines = len(ledger.figures(db, _first_day(occasion)))
        if occasion.phase != "awaiting_signoff" or occasion.signoff_step_id != decided.step_id:
            return _state(db, occasion, lines)
        actor = decided.by or ACTOR
        if decided.approved:
            occasions.close(db, occasion, actor=actor)
            occasion.phase = "closed"
            trail.record(db, actor=actor, action="budget_variance.signed_off", entity_type="occasion",
                         entity_id=occasion_id, data={"month": occasion.key, "pdf_sha256": occasion.report_sha256,
                                                      "step_id": decided.step_id, "comment": decided.comment})
        else:
            occasions.set_status(db, occasion, OccasionStatus.changes_requested, actor=actor)
            occasion.phase = "changes_requested"
            trail.record(db, actor=actor, action=f"budget_variance.signoff_{decided.verdict.value}",
                         entity_type="occasion", entity_id=occasion_id,
                         data={"month": occasion.key, "comment": decided.comment, "step_id": decided.step_id})
        if decided.answered and not decided.approved:
            told = Digest(key=f"budget-variance-{occasion.key}-rejected-{occasion.signoff_round}",
                          template=f"{TEMPLATES}/signoff_rejected",
                          context={"month": {"key": occasion.key, "label": _period(occasion.key).label},
                                   "comment": decided.comment, "approver": decided.by_name or "The director",
                                   "rebuild_at": rebuild_at},
                          items_as="lines")
            for shown, _ in _justifications(db, occasion):
                centre = db.get(CostCentre, shown.cost_centre_id)
                assert centre is not None
                told.add(centre.owner_id, {"line": shown.line})
            told.queue(db)
        db.add(occasion)
        db.flush()
        settled = _state(db, occasion, lines)
        return replace(settled, due_at=rebuild_at) if occasion.phase == "changes_requested" else settled
