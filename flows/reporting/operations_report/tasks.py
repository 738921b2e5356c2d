"""The operations report's tasks: each loads one section from the registry, or renders, records, publishes, sends."""

from __future__ import annotations

import gc
import hashlib
from dataclasses import asdict, replace
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.runtime import flow_run
from sqlmodel import col, func, select

from engine import notify, occasions, processes
from engine.exports import csv_bytes
from engine.forms import form_title
from engine.periods import Period
from engine.reports import SavedReport, report_path, save_pdf, save_report
from engine.templates import render_page
from engine.work import unit
from flows.reporting.operations_report import PROCESS, charts, rules
from registry import (
    ActionStatus,
    CorrectiveAction,
    DeliveryStatus,
    Finding,
    FindingStatus,
    HumanStep,
    InventoryItem,
    KpiDefinition,
    KpiMeasurement,
    Notification,
    OperationsReport,
    PurchaseRequest,
    PurchaseRequestLine,
    StepStatus,
    Vendor,
    VendorScorecard,
    session,
    trail,
)
from registry.clock import as_utc, utcnow
from registry.people import names_by_id, people_with_role
from registry.supply import OPEN_REQUEST_STATUSES

MARKDOWN_ARTIFACT = "operations-report"
KPI_ARTIFACT = "operations-report-kpis"
OWED = (ActionStatus.open, ActionStatus.reopened)  # the owner still has to act: late means overdue
UNVERIFIED = (*OWED, ActionStatus.done)  # open until the verifier confirms it worked
OLDEST_SHOWN = 10
SHORTAGES_SHOWN = 15
TEMPLATES = "reporting/operations_report"


@task
def kpi_section(period: Period) -> list[rules.KpiRow]:
    """Every active KPI with its measurements over the chart window, in two queries."""
    first, last = rules.chart_window(period)
    with unit() as db:
        kpis = list(db.exec(select(KpiDefinition).where(col(KpiDefinition.active).is_(True))
                            .order_by(col(KpiDefinition.code))))
        owners = names_by_id(db, {k.owner_id for k in kpis})
        points: dict[int, list[tuple[date, float]]] = {k.id or 0: [] for k in kpis}
        measured = select(col(KpiMeasurement.kpi_id), col(KpiMeasurement.measured_on), col(KpiMeasurement.value))
        rows = db.exec(measured.where(col(KpiMeasurement.kpi_id).in_(list(points)),
                                      col(KpiMeasurement.measured_on) >= first,
                                      col(KpiMeasurement.measured_on) <= last)).all() if points else []
        for kpi_id, day, value in rows:
            points[kpi_id].append((day, value))
    return [rules.summarize_kpi(rules.KpiSpec(id=k.id or 0, code=k.code, name=k.name, unit=k.unit, target=k.target,
                                              direction=k.direction.value, owner=owners.get(k.owner_id or 0, ""),
                                              description=k.description), points[k.id or 0], period)
            for k in kpis]


@task
def findings_section(now: datetime, period: Period, tz: str) -> rules.FindingsSection:
    """Open findings and unverified corrective actions by age and the oldest of them; what closed in the period."""
    start, end = period.bounds(tz)
    with unit() as db:
        findings = list(db.exec(select(Finding, CorrectiveAction)
                                .outerjoin(CorrectiveAction, col(CorrectiveAction.finding_id) == Finding.id)
                                .where(col(Finding.status) == FindingStatus.open)))
        actions = list(db.exec(select(CorrectiveAction, Finding)
                               .join(Finding, col(Finding.id) == CorrectiveAction.finding_id)
                               .where(col(CorrectiveAction.status).in_(UNVERIFIED))))
        closed = db.exec(select(func.count()).select_from(Finding).where(
            col(Finding.status) == FindingStatus.closed, col(Finding.closed_at) >= start,
            col(Finding.closed_at) < end)).one()
        verified = db.exec(select(func.count()).select_from(CorrectiveAction).where(
            col(CorrectiveAction.status) == ActionStatus.verified, col(CorrectiveAction.verified_at) >= start,
            col(CorrectiveAction.verified_at) < end)).one()
        owner_ids: set[int | None] = {a.owner_id for a, _ in actions}
        owner_ids |= {a.owner_id for _, a in findings if a is not None}
        owners = names_by_id(db, owner_ids)
    items = [rules.OpenItem("finding", f.description, f.severity.value, owners.get(a.owner_id, "") if a else "",
                            rules.age_days(f.created_at, now)) for f, a in findings]
    items += [rules.OpenItem("corrective action", a.description, f.severity.value, owners.get(a.owner_id, ""),
                             rules.age_days(a.created_at, now), as_utc(a.due_at),
                             a.status in OWED and as_utc(a.due_at) < now)
              for a, f in actions]
    ages = rules.age_table([(i.age_days, i.severity) for i in items if i.kind == "finding"],
                           [(i.age_days, i.overdue) for i in items if i.kind == "corrective action"])
    return rules.FindingsSection(
        ages=ages, oldest=sorted(items, key=lambda i: (-i.age_days, i.kind))[:OLDEST_SHOWN],
        resolution=rules.Resolution(findings_closed=closed, actions_verified=verified,
                                    awaiting_verification=sum(a.status == ActionStatus.done for a, _ in actions)))


@task
def latency_section(period: Period, tz: str) -> list[rules.LatencyRow]:
    """Hours from asking to answer for every approval and request answered in the period."""
    start, end = period.bounds(tz)
    answered = col(HumanStep.answered_at)
    with unit() as db:
        steps = db.execute(sa.select(col(HumanStep.kind), col(HumanStep.form), col(HumanStep.created_at), answered,
                                     col(HumanStep.due_at))
                           .where(col(HumanStep.status) == StepStatus.answered, answered >= start, answered < end))
        answers = [(k, f, asked, done, due) for k, f, asked, done, due in steps if done]
    return rules.latency_rows(answers, titles={form: form_title(form) for form in {f for _, f, *_ in answers}})


@task
def vendor_section() -> list[rules.VendorLine]:
    """Active vendors, their standing and their latest score (or why there is none)."""
    with unit() as db:
        vendors = list(db.exec(select(Vendor).where(col(Vendor.active).is_(True)).order_by(col(Vendor.code))))
        owners = names_by_id(db, {v.owner_id for v in vendors})
        cards: dict[int, list[rules.Scorecard]] = {}
        for vendor_id, period, score in db.exec(select(VendorScorecard.vendor_id, VendorScorecard.period,
                                                       VendorScorecard.score)
                                                .order_by(col(VendorScorecard.created_at), col(VendorScorecard.id))):
            cards.setdefault(vendor_id, []).append(rules.Scorecard(period, score))
    lines = []
    for v in vendors:
        latest = rules.latest_score(cards.get(v.id or 0, ()))
        lines.append(rules.VendorLine(code=v.code, name=v.name, owner=owners.get(v.owner_id, ""),
                                      standing=v.standing.value, score=latest.score,
                                      scored_period=latest.scored_period, contract_end=v.contract_end,
                                      reviewed_period=latest.reviewed_period, note=latest.note))
    return lines


@task
def inventory_section() -> tuple[rules.InventoryHealth | None, list[rules.Shortage]]:
    """Stock totals in one aggregate; the items at or below their reorder point through its partial index."""
    item = InventoryItem.__table__  # type: ignore[attr-defined]
    line = PurchaseRequestLine.__table__  # type: ignore[attr-defined]
    request = PurchaseRequest.__table__  # type: ignore[attr-defined]
    vendor = Vendor.__table__  # type: ignore[attr-defined]
    low = item.c.on_hand <= item.c.reorder_point
    totals = sa.select(sa.func.count(), sa.func.sum(sa.case((item.c.on_hand == 0, 1), else_=0)),
                       sa.func.sum(item.c.on_hand * item.c.unit_cost))
    on_order = (sa.select(line.c.item_id, sa.func.sum(line.c.quantity).label("quantity"))
                .join(request, request.c.id == line.c.request_id)
                .where(request.c.status.in_(OPEN_REQUEST_STATUSES)).group_by(line.c.item_id).subquery("on_order"))
    open_qty = sa.func.coalesce(on_order.c.quantity, 0)
    short = (sa.select(item.c.sku, item.c.location, item.c.description, vendor.c.code, item.c.on_hand,
                       item.c.reorder_point, open_qty)
             .join(vendor, vendor.c.id == item.c.vendor_id).outerjoin(on_order, on_order.c.item_id == item.c.id)
             .where(low).order_by(item.c.on_hand, item.c.reorder_point.desc(), item.c.sku, item.c.location))
    with unit() as db:
        connection = db.connection()
        count, empty, value = connection.execute(totals).one()
        if not count:
            return None, []
        shortages = [rules.Shortage(*row) for row in connection.execute(short)]
    health = rules.InventoryHealth(
        items=int(count), at_or_below=len(shortages), out_of_stock=int(empty or 0),
        covered=sum(s.on_hand + s.on_order > s.reorder_point for s in shortages), stock_value=float(value or 0))
    return health, shortages[:SHORTAGES_SHOWN]


@task
def obligations_section(now: datetime) -> list[rules.Obligation]:
    """What every process puts on the calendar within the horizon (or overdue), and the corrective actions their
    owners still owe: the actions are the engine's, shared by every process, not any one process's."""
    horizon = now + timedelta(days=rules.OBLIGATION_HORIZON_DAYS)
    with unit() as db:
        declared = [due for _, due in processes.obligations(db, horizon)]
        actions = list(db.exec(select(CorrectiveAction).where(col(CorrectiveAction.status).in_(OWED),
                                                              col(CorrectiveAction.due_at) < horizon)))
        owners = names_by_id(db, {d.owner_id for d in declared} | {a.owner_id for a in actions})
    found = [rules.obligation(d.kind, d.what, owners.get(d.owner_id or 0, ""), d.due_at, now) for d in declared]
    found += [rules.obligation("Corrective action", a.description, owners.get(a.owner_id, ""), a.due_at, now)
              for a in actions]
    return rules.due_soon(found)


@task
def contributed_sections(period: Period) -> list[rules.Contributed]:
    """Every discovered process's own parts of the report (engine.processes.Section), each built by the process
    for the period: the report reads no process's tables. A part whose build fails says so in the report (and
    the log says why) instead of taking the whole report down with it."""
    declared = [(p, section) for p in processes.discover().values() for section in p.sections]
    keys = [section.key for _, section in declared]
    if clash := sorted({k for k in keys if keys.count(k) > 1 or k in rules.OWN_SECTIONS}):
        raise processes.DeclarationProblem(f"report sections named twice or as one of the report's own: {clash}")
    parts = []
    with session() as db:  # read only: a section shows the registry, it changes nothing
        for process, section in declared:
            part = rules.Contributed(key=section.key, title=section.title, template=section.template,
                                     process=process.name)
            try:
                parts.append(replace(part, data=section.build(db, period)))
            except Exception:
                get_run_logger().exception("The %s section of %s could not be built", section.key, process.name)
                db.rollback()
                parts.append(replace(part, failed=True))
    return parts


def _csv(rows: list[rules.Figure]) -> bytes:
    # Names and units come from imports and forms: a "=2+3" among them must not run in the reader's spreadsheet.
    return csv_bytes(rules.FIGURE_COLUMNS, rows)


_heap_frozen = False


def _freeze_the_long_lived() -> None:
    """Once per process, with the drawing and printing libraries loaded: everything alive by then (Prefect,
    SQLAlchemy, matplotlib, WeasyPrint — half a million objects) lives as long as the process. Frozen, it is left
    out of the full collections that the charts' and the PDF's allocations set off; each of them otherwise scans
    it all again, 0.3–0.8 s of a month's report (cProfile and pyinstrument put it in whatever WeasyPrint function
    happened to allocate)."""
    global _heap_frozen
    if _heap_frozen:
        return
    import matplotlib.backends.backend_agg  # noqa: F401
    import weasyprint  # noqa: F401

    gc.collect(1)  # the young garbage goes first, cheaply; only what survives is frozen
    gc.freeze()
    _heap_frozen = True


@task
def render(period: Period, sections: rules.Sections, top: rules.Headline, generated_at: datetime,
           tz: str, contributed: list[rules.Contributed] | None = None) -> dict[str, str]:
    """Charts, the HTML report beside them, its PDF and the CSV of every figure, all in the report's folder; the
    processes' own sections after the report's."""
    contributed = contributed or []
    _freeze_the_long_lived()
    folder = f"operations/{period.key}"
    base = report_path(f"{folder}/report.html").parent
    drawn = {"kpis": charts.kpi_trends(sections.kpis, period, base / charts.KPI_TRENDS),
             "ages": charts.findings_by_age(sections.ages, base / charts.FINDINGS_AGE)}
    html = save_report(f"{folder}/report.html", f"{TEMPLATES}/report.html", {
        "period": period, "sections": sections, "top": top, "generated_at": generated_at,
        "person": {"timezone": tz}, "charts": {k: v.name if v else None for k, v in drawn.items()},
        "kpi_strips": charts.kpi_strips(sections.kpis) if drawn["kpis"] else [],
        "horizon_days": rules.OBLIGATION_HORIZON_DAYS,
        "steady_share": rules.STEADY_SHARE, "contributed": contributed})
    pdf = save_pdf(f"{folder}/report.pdf", html.path.read_text(encoding="utf-8"))
    figures = _csv(rules.figures(period, sections, top) + rules.contributed_figures(contributed))
    table = base / "figures.csv"
    table.write_bytes(figures)
    return {"html": str(html.path), "pdf": str(pdf.path), "csv": str(table), "pdf_sha256": pdf.sha256,
            "html_sha256": html.sha256, "csv_sha256": hashlib.sha256(figures).hexdigest(),
            **{f"chart_{k}": str(v) for k, v in drawn.items() if v}}


@task
def record(period: Period, files: dict[str, str], generated_at: datetime, tz: str) -> int:
    """The period's occasion holding the PDF by its hash (closed once the period is over: its figures are final),
    the report row with all three files (a rebuild replaces them) and a trail event naming them by their hashes."""
    start, end = period.bounds(tz)
    with unit() as db:
        occasion, _ = occasions.open_occasion(db, process=PROCESS.name, key=period.key,
                                              title=f"{PROCESS.title} {period.label}", period_start=start,
                                              period_end=end, flow_run_id=_run_id())
        occasions.record_report(db, occasion, SavedReport(path=Path(files["pdf"]), sha256=files["pdf_sha256"]))
        if as_utc(generated_at) >= end:
            occasions.close(db, occasion, actor=PROCESS.actor)
        row = db.exec(select(OperationsReport).where(OperationsReport.key == period.key)).first()
        row = row or OperationsReport(key=period.key, period_start=period.start, period_end=period.end,
                                      html_path="", pdf_path="", csv_path="", pdf_sha256="")
        row.generated_at, row.html_path, row.pdf_path = generated_at, files["html"], files["pdf"]
        row.csv_path, row.pdf_sha256 = files["csv"], files["pdf_sha256"]
        db.add(row)
        db.flush()
        trail.record(db, actor=PROCESS.actor, action="operations_report.built", entity_type="operations_report",
                     entity_id=row.id or 0, data={"key": period.key, "first_day": period.start,
                                                  "last_day": period.end, "pdf_sha256": files["pdf_sha256"],
                                                  "html_sha256": files["html_sha256"],
                                                  "csv_sha256": files["csv_sha256"], "pdf": files["pdf"],
                                                  "occasion_id": occasion.id})
        return row.id or 0


def _run_id() -> str | None:
    run_id = flow_run.get_id()
    return str(run_id) if run_id else None


def _kpi_table(kpis: list[rules.KpiRow]) -> list[dict[str, Any]]:
    def shown(value: float | None) -> float | str:
        return "—" if value is None else round(value, 2)

    return [{"KPI": f"{k.spec.code} {k.spec.name}", "unit": k.spec.unit, "target": k.spec.target,
             "better": k.spec.direction, "period mean": shown(k.value), "latest": shown(k.latest),
             "previous period": shown(k.previous), "change": shown(k.change), "trend": k.trend.value,
             "status": k.status.value, "measurements": k.measurements} for k in kpis]


@task
def publish(period: Period, sections: rules.Sections, top: rules.Headline, files: dict[str, str],
            seconds: float) -> None:
    """The latest report in the Prefect UI: a markdown summary and the KPI table, under stable keys."""
    summary = render_page(f"{TEMPLATES}/summary.md", {
        "period": period, "sections": sections, "top": top, "files": files, "seconds": seconds})
    description = render_page(f"{TEMPLATES}/artifact_description.txt", {"period": period, "top": top}).strip()
    create_markdown_artifact(summary, key=MARKDOWN_ARTIFACT, description=description)
    create_table_artifact(_kpi_table(sections.kpis), key=KPI_ARTIFACT,
                          description=f"KPIs against target, {period.label} ({period.start} to {period.end})")


def _message_context(period: Period, sections: rules.Sections, top: rules.Headline, files: dict[str, str],
                     contributed: list[rules.Contributed]) -> dict[str, Any]:
    """What the e-mail says: the headline, the KPI table, the charts by file name (no measurement series) and the
    titles of the processes' own sections the PDF holds besides."""
    kpis = [{**{k: v for k, v in asdict(row).items() if k not in ("points", "spec")}, **asdict(row.spec)}
            for row in sections.kpis]
    return {"period": {"key": period.key, "label": period.label, "kind": period.kind, "start": period.start,
                       "end": period.end},
            "top": asdict(top), "kpis": kpis,
            "charts": {k.removeprefix("chart_"): Path(v).name for k, v in files.items() if k.startswith("chart_")},
            "contributed": [part.title for part in contributed]}


@task
def send(period: Period, sections: rules.Sections, top: rules.Headline, files: dict[str, str],
         contributed: list[rules.Contributed] | None = None) -> tuple[int, int]:
    """One message per person on the distribution list, the PDF attached and the charts inline; once per period."""
    attachments = [Path(files["pdf"])] + [Path(v) for k, v in files.items() if k.startswith("chart_")]
    context = _message_context(period, sections, top, files, contributed or [])
    began = utcnow()
    with unit() as db:
        people = people_with_role(db, rules.DISTRIBUTION_ROLE)
        queued = [row.id for person in people
                  for row in notify.enqueue(db, key=f"operations-report-{period.key}-{person.id}",
                                            recipient_id=person.id or 0, template=f"{TEMPLATES}/report_mail",
                                            context={**context, "recipient": notify.recipient(person)},
                                            attachments=attachments)
                  if row.id is not None and as_utc(row.created_at) >= began]  # a rebuild's are there already
    if not people:
        get_run_logger().warning("Nobody holds the %s role: the report is built but sent to no one.",
                                 rules.DISTRIBUTION_ROLE)
    if not queued:
        return len(people), 0
    with unit() as db:  # the first unit delivered what it queued as it closed
        sent = db.exec(select(func.count()).select_from(Notification).where(
            col(Notification.id).in_(queued), col(Notification.status) == DeliveryStatus.sent)).one()
    return len(people), sent
