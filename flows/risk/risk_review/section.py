"""The risk register as reports show it: heat maps with each risk's move, the register table, the risks above
appetite — for the review's own report (report.py) and for the operations report's risk section (`build`).

Cheap to import (no Prefect): the operations report reads its sections through the process declaration.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlmodel import Session, col, select

from engine import periods
from engine.periods import Period
from flows.risk.risk_review import register, rules
from registry import CorrectiveAction
from registry.clock import as_utc, utcnow
from registry.people import names_by_id
from registry.risk import AcceptanceStatus, RiskAcceptance

TOP_SHOWN = 10  # risks above appetite listed in full
ARROWS = {"up": "▲", "down": "▼", "new": "new", "same": "", None: ""}
OPEN = (AcceptanceStatus.pending, AcceptanceStatus.accepted, AcceptanceStatus.treating)


def ink(colour: str) -> str:
    """Dark or white text, whichever reads on `colour` ('#rrggbb'): the relative luminance of WCAG."""
    channels = [int(colour.lstrip("#")[i:i + 2], 16) / 255 for i in (0, 2, 4)]
    r, g, b = (c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels)
    return "#1d2733" if 0.2126 * r + 0.7152 * g + 0.0722 * b > 0.33 else "#ffffff"


@dataclass(frozen=True)
class Decided:
    """The Director's standing decision on a risk, as the register shows it."""

    status: str
    label: str
    until: date | None = None
    detail: str = ""
    """What was decided, in full: the justification of an acceptance, the action and its owner of a treatment."""


_LABELS = {AcceptanceStatus.pending: "awaiting the Director", AcceptanceStatus.treating: "treatment assigned",
           AcceptanceStatus.accepted: "accepted", AcceptanceStatus.expired: "acceptance expired"}


def _label(a: RiskAcceptance) -> str:
    if a.status == AcceptanceStatus.voided:  # what was given for the earlier score, so the reader knows what went
        if "re-scored" not in a.void_reason:
            return "not decided in time"
        given = (f"acceptance until {a.accepted_until:%d %b %Y}" if a.decision == "accept" and a.accepted_until
                 else "treatment" if a.decision == "treat" else "question to the Director")
        return f"{given} void: re-scored"
    if a.status in (AcceptanceStatus.accepted, AcceptanceStatus.expired) and a.accepted_until:
        return f"{_LABELS[a.status]} until {a.accepted_until:%d %b %Y}"
    return _LABELS[a.status]


def _decisions(db: Session, risk_ids: list[int]) -> dict[int, Decided]:
    """Each risk's latest open decision (pending, accepted, treating), else its latest voided or expired one."""
    rows = list(db.exec(select(RiskAcceptance).where(col(RiskAcceptance.risk_id).in_(risk_ids))
                        .order_by(col(RiskAcceptance.id))))
    names = names_by_id(db, {a.decided_by_id for a in rows} | {a.action_owner_id for a in rows})
    due = dict(db.exec(select(CorrectiveAction.finding_id, CorrectiveAction.due_at).where(
        col(CorrectiveAction.finding_id).in_([a.finding_id for a in rows if a.finding_id]))).all())
    found: dict[int, Decided] = {}
    for a in rows:
        if a.risk_id in found and found[a.risk_id].status in OPEN and a.status not in OPEN:
            continue
        by = names.get(a.decided_by_id or 0, "")
        if a.decision == "treat":
            when = due.get(a.finding_id or 0)
            detail = f"treat: {a.action} — {names.get(a.action_owner_id or 0, '')}" + (
                f", due {when:%d %b %Y}" if when else "") + (f" (decided by {by})" if by else "")
        elif a.decision == "accept":
            detail = f"{a.justification} (accepted by {by})" if by else a.justification
        else:
            detail = ""
        found[a.risk_id] = Decided(a.status.value, _label(a), a.accepted_until, detail)
    return found


def _moves(rows: list[register.RegisterRow], baseline: dict[int, register.Assessed],
           grids: dict[int, rules.Matrix]) -> dict[int, tuple[rules.Move, rules.Move]]:
    """Each risk's (inherent, residual) move from the assessment standing at the baseline to its scores now."""
    moves = {}
    for row in rows:
        before = baseline.get(row.risk_id)
        if before is None:
            moves[row.risk_id] = (rules.move(None, row.inherent_scored), rules.move(None, row.residual_scored))
            continue
        inherent, residual = rules.levels_of(grids[row.matrix_id], before.scores)
        s = before.scores
        moves[row.risk_id] = (
            rules.move(rules.Scored(s.inherent_likelihood, s.inherent_impact, inherent), row.inherent_scored),
            rules.move(rules.Scored(s.residual_likelihood, s.residual_impact, residual), row.residual_scored))
    return moves


def _heat(rows: list[register.RegisterRow], moves: dict[int, tuple[rules.Move, rules.Move]],
          matrix: rules.Matrix, side: int) -> dict[str, Any]:
    """One heat map as its template draws it: rows of cells, highest likelihood first, each with its risks."""
    plotted = []
    for row in rows:
        scored = row.inherent_scored if side == 0 else row.residual_scored
        plotted.append(rules.Plotted(row.code, scored.likelihood, scored.impact, moves[row.risk_id][side].by_score))
    grid = rules.heat_map(plotted, matrix)
    return {"likelihoods": list(grid.likelihoods), "impacts": list(grid.impacts), "by_level": grid.by_level,
            "total": grid.total,
            "rows": [[{"level": cell.level, "colour": cell.colour, "ink": ink(cell.colour),
                       "risks": [{"code": code, "move": move, "arrow": ARROWS[move]}
                                 for code, move in zip(cell.codes, cell.moves, strict=True)]}
                      for cell in line] for line in grid.rows]}


def register_view(db: Session, rows: list[register.RegisterRow], baseline_at: datetime | None,
                  tz: str) -> dict[str, Any]:
    """Heat maps (inherent, residual) per matrix, the register rows, and the risks above appetite, highest first."""
    grids = register.matrices(db)
    ids = [row.risk_id for row in rows]
    baseline = register.assessments_as_of(db, baseline_at, ids) if baseline_at is not None else {}
    moves = _moves(rows, baseline, grids)
    decided = _decisions(db, ids)
    history = register.latest_assessments(db, ids)
    now = utcnow()
    table = []
    for row in rows:
        inherent_move, residual_move = moves[row.risk_id]
        decision = decided.get(row.risk_id)
        current = history.get(row.risk_id)
        table.append({
            "code": row.code, "title": row.title, "category": row.category, "owner": row.owner,
            "cause": row.cause, "event": row.event, "consequence": row.consequence,
            "inherent": _scored(row.inherent_scored), "residual": _scored(row.residual_scored),
            "inherent_move": inherent_move.by_score, "residual_move": residual_move.by_score,
            "inherent_arrow": ARROWS[inherent_move.by_score], "residual_arrow": ARROWS[residual_move.by_score],
            "levels_moved": residual_move.levels, "appetite": row.appetite, "above": row.above_appetite,
            "treatment": row.treatment.value, "treatment_plan": row.treatment_plan,
            "decision": decision.label if decision else "", "decision_status": decision.status if decision else "",
            "decision_detail": decision.detail if decision else "",
            "rationale": current.current.rationale if current else "",
            "last_reviewed": _day(row.last_reviewed_at, tz), "next_review": _day(row.next_review_at, tz),
            "overdue": row.next_review_at is not None and as_utc(row.next_review_at) < now})
    used = sorted({row.matrix_id for row in rows})
    maps = [{"matrix": grids[m].code, "levels": [{"name": lv.name, "colour": lv.colour, "ink": ink(lv.colour)}
                                                  for lv in grids[m].levels],
             "inherent": _heat([r for r in rows if r.matrix_id == m], moves, grids[m], 0),
             "residual": _heat([r for r in rows if r.matrix_id == m], moves, grids[m], 1)} for m in used]
    above = [t for t in table if t["above"]]
    return {"maps": maps, "register": table, "above": above[:TOP_SHOWN], "above_count": len(above),
            "moved_up": sum(t["residual_move"] == "up" for t in table),
            "moved_down": sum(t["residual_move"] == "down" for t in table),
            "undecided": sum(t["above"] and t["decision_status"] not in ("accepted", "treating") for t in table)}


def _scored(scored: rules.Scored) -> dict[str, Any]:
    return {"likelihood": scored.likelihood, "impact": scored.impact, "score": scored.score,
            "level": scored.level.name, "colour": scored.level.colour, "ink": ink(scored.level.colour)}


def _day(moment: datetime | None, tz: str) -> str:
    return "—" if moment is None else f"{periods.today(at=as_utc(moment), tz=tz):%d %b %Y}"


def build(db: Session, period: Period) -> dict[str, Any] | None:
    """The operations report's risk section: the residual heat map with each risk's move over the period, the
    risks above appetite and how they stand; None when the register is empty."""
    from engine.settings import get_settings

    tz = get_settings().timezone
    rows = register.register(db)
    if not rows:
        return None
    start, _ = period.bounds(tz)
    view = register_view(db, rows, start, tz)
    by_level: dict[str, int] = {}
    for drawn in view["maps"]:
        for name, count in drawn["residual"]["by_level"].items():
            by_level[name] = by_level.get(name, 0) + count
    overdue = sum(t["overdue"] for t in view["register"])
    accepted = sum(t["above"] and t["decision_status"] == "accepted" for t in view["register"])
    treating = sum(t["above"] and t["decision_status"] == "treating" for t in view["register"])
    figures = [("risks", len(rows)), ("risks above appetite", view["above_count"]),
               ("above appetite, accepted", accepted), ("above appetite, treatment assigned", treating),
               ("above appetite, undecided", view["undecided"]), ("residual moved up in the period", view["moved_up"]),
               ("residual moved down in the period", view["moved_down"]), ("reviews overdue", overdue)]
    figures += [(f"residual {name}", count) for name, count in by_level.items()]
    return {**view, "risks": len(rows), "overdue": overdue, "accepted": accepted, "treating": treating,
            "by_level": by_level, "figures": figures}
