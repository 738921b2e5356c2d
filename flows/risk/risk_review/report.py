"""What the risk review shows: its report (HTML and PDF, kept on its occasion) and a Prefect artifact."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from sqlmodel import Session, col, select

from engine import occasions
from engine.reports import save_pdf, save_report, slug
from engine.settings import get_settings
from engine.templates import render_page
from engine.work import unit
from flows.risk.risk_review import register
from flows.risk.risk_review.answers import ACTOR, PROCESS, TEMPLATES
from flows.risk.risk_review.section import register_view
from flows.risk.risk_review.tasks import ReviewState, Scope, in_scope
from registry import HumanStep, Occasion, StepStatus
from registry.clock import as_utc, utcnow
from registry.risk import RiskAssessment, RiskRescore

ARTIFACT_KEY = "risk-review-register"
QUARTER = re.compile(r"\d{4}-Q[1-4]")  # a quarterly review's occasion key


@dataclass(frozen=True)
class Built:
    html: str
    pdf: str
    pdf_sha256: str


def baseline(db: Session, occasion: Occasion, scope: Scope) -> tuple[datetime, str]:
    """Since when a risk's move is counted: the close of the previous quarterly review (what "since the last
    review" means to a reader of the register), else the opening of this one."""
    if not (scope.request or scope.risk_code or scope.category):
        closed = db.exec(select(Occasion).where(Occasion.process == PROCESS, col(Occasion.id) != occasion.id,
                                                col(Occasion.closed_at).is_not(None),
                                                col(Occasion.opened_at) < occasion.opened_at)
                         .order_by(col(Occasion.opened_at).desc()))
        before = next((o for o in closed if QUARTER.fullmatch(o.key)), None)
        if before is not None and before.closed_at is not None:
            return as_utc(before.closed_at), f"the close of the {before.key} review"
    return as_utc(occasion.opened_at), "this review's opening"


def _answers(db: Session, occasion_id: int) -> dict[str, str]:
    """How each risk of the review was answered: re-scored, confirmed, not answered (yet), by risk code."""
    from registry.risk import Risk

    rows = db.exec(select(Risk.code, RiskRescore.assessment_id, RiskAssessment.changed, HumanStep.status)
                   .join(Risk, col(Risk.id) == RiskRescore.risk_id)
                   .outerjoin(RiskAssessment, col(RiskAssessment.id) == RiskRescore.assessment_id)
                   .outerjoin(HumanStep, col(HumanStep.id) == RiskRescore.step_id)
                   .where(RiskRescore.occasion_id == occasion_id))
    shown = {}
    for code, assessment_id, changed, status in rows:
        if assessment_id is not None:
            shown[code] = "re-scored" if changed else "confirmed"
        elif status == StepStatus.answered:
            shown[code] = "answered"
        else:
            shown[code] = "no answer"
    return shown


def report_context(db: Session, state: ReviewState) -> dict[str, Any]:
    """Everything the report says, as plain data."""
    tz = get_settings().timezone
    occasion = db.get(Occasion, state.occasion_id)
    assert occasion is not None
    risks = in_scope(db, occasion, state.scope)
    rows = register.register(db, risk_ids=[r.id or 0 for r in risks])
    since, since_what = baseline(db, occasion, state.scope)
    view = register_view(db, rows, since, tz)
    answered = _answers(db, occasion.id or 0)
    for row in view["register"]:
        row["this_review"] = answered.get(row["code"], "not due")
    counts = {"asked": len(answered), "rescored": list(answered.values()).count("re-scored"),
              "confirmed": list(answered.values()).count("confirmed"),
              "unanswered": list(answered.values()).count("no answer")}
    return {"review": {"title": occasion.title, "key": occasion.key, "period": state.period,
                       "opened_at": occasion.opened_at, "deadline": state.rescore_due_at},
            "since": since, "since_what": since_what, "generated_at": utcnow(), "person": {"timezone": tz},
            "counts": counts, **view}


@task
def publish(state: ReviewState) -> Built:
    """The report as HTML and PDF under reports/risk/<review>/, the PDF's hash on the occasion, and the register as
    Prefect artifacts."""
    with unit() as db:
        context = report_context(db, state)
        folder = f"risk/{slug(context['review']['key'])}"
        html = save_report(f"{folder}/report.html", f"{TEMPLATES}/report.html", context)
        pdf = save_pdf(f"{folder}/report.pdf", html.path.read_text(encoding="utf-8"))
        occasion = db.get(Occasion, state.occasion_id)
        assert occasion is not None
        occasions.record_report(db, occasion, pdf, actor=ACTOR)
    create_table_artifact([{
        "risk": r["code"], "title": r["title"], "category": r["category"], "owner": r["owner"],
        "inherent": f"{r['inherent']['likelihood']}×{r['inherent']['impact']} {r['inherent']['level']}",
        "residual": f"{r['residual']['likelihood']}×{r['residual']['impact']} {r['residual']['level']}",
        "move": r["residual_move"], "appetite": r["appetite"], "above appetite": "yes" if r["above"] else "no",
        "decision": r["decision"] or "—", "this review": r["this_review"], "next review": r["next_review"]}
        for r in context["register"]], key=ARTIFACT_KEY, description=f"Risk register, {context['review']['title']}")
    create_markdown_artifact(render_page(f"{TEMPLATES}/summary.md", {**context, "files": {
        "html": str(html.path), "pdf": str(pdf.path), "pdf_sha256": pdf.sha256}}),
        key=f"{ARTIFACT_KEY}-summary", description="Risk review summary")
    return Built(html=str(html.path), pdf=str(pdf.path), pdf_sha256=pdf.sha256)
