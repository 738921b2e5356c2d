"""The operations report's tasks: each loads one section from the registry, or renders, records, publishes, sends."""

from __future__ import annotations

import gc
import hashlib
from bisect import bisect_left, bisect_right
from dataclasses import asdict, replace
from datetime import datetime, timedelta
from functools import cache
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
from engine.importer import table_of
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
    Person,
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


_Statement = sa.Select[*tuple[Any, ...]]


def _moment(name: str) -> sa.BindParameter[datetime]:
    return sa.bindparam(name, type_=table_of(HumanStep).c.created_at.type)


# The sections' statements are built once (a report reads the registry in a few milliseconds: building them
# anew each time cost as much as running some); what changes between reports is bound when they run.


@cache
def _kpi_statements() -> tuple[_Statement, _Statement]:
    kpi, person, measured = table_of(KpiDefinition), table_of(Person), table_of(KpiMeasurement)
    specs = (sa.select(kpi.c.id, kpi.c.code, kpi.c.name, kpi.c.unit, kpi.c.target, kpi.c.direction,
                       sa.func.coalesce(person.c.name, ""), kpi.c.description)
             .outerjoin(person, person.c.id == kpi.c.owner_id).where(kpi.c.active.is_(True)).order_by(kpi.c.code))
    series = (sa.select(measured.c.kpi_id, measured.c.measured_on, measured.c.value)
              .join(kpi, kpi.c.id == measured.c.kpi_id)
              .where(kpi.c.active.is_(True), measured.c.measured_on >= sa.bindparam("first", type_=sa.Date),
                     measured.c.measured_on <= sa.bindparam("last", type_=sa.Date))
              .order_by(measured.c.kpi_id, measured.c.measured_on))
    return specs, series


@task
def kpi_section(period: Period) -> list[rules.KpiRow]:
    """Every active KPI with its owner, and their measurements over the chart window in order, in two queries."""
    first, last = rules.chart_window(period)
    specs, series = _kpi_statements()
    with unit() as db:
        connection = db.connection()
        kpis = connection.execute(specs).all()
        rows = connection.execute(series, {"first": first, "last": last}).all() if kpis else []
    ids = [kpi_id for kpi_id, _, _ in rows]  # in order: each KPI's points are one slice
    points = [(day, value) for _, day, value in rows]
    shown = []
    for kpi_id, code, name, measured_in, target, direction, owner, description in kpis:
        spec = rules.KpiSpec(id=kpi_id, code=code, name=name, unit=measured_in, target=target,
                             direction=direction.value, owner=owner, description=description)
        shown.append(rules.summarize_ordered(spec, points[bisect_left(ids, kpi_id):bisect_right(ids, kpi_id)],
                                             period))
    return shown


@cache
def _findings_statements() -> tuple[sa.CompoundSelect[*tuple[Any, ...]], _Statement, _Statement, _Statement]:
    finding, action, person = table_of(Finding), table_of(CorrectiveAction), table_of(Person)
    is_open = finding.c.status == FindingStatus.open
    unverified = action.c.status.in_(UNVERIFIED)

    def bucket(created: sa.ColumnElement[Any]) -> sa.ColumnElement[int]:
        # The index in rules.AGE_BUCKETS, from the moments rules.age_bucket_starts gives as young, middle, old.
        return sa.case((created > _moment("young"), 0), (created > _moment("middle"), 1),
                       (created > _moment("old"), 2), else_=3)

    found_in, acted_in = bucket(finding.c.created_at), bucket(action.c.created_at)
    owed_late = sa.and_(action.c.status.in_(OWED), action.c.due_at < _moment("now"))
    # One statement for both counts: an action's row has no severity (every finding has one).
    counted = sa.union_all(
        sa.select(found_in, finding.c.severity, sa.func.count(), sa.literal(0), sa.literal(0)).where(is_open)
        .group_by(found_in, finding.c.severity),
        sa.select(acted_in, sa.null(), sa.func.count(), sa.func.sum(sa.case((owed_late, 1), else_=0)),
                  sa.func.sum(sa.case((action.c.status == ActionStatus.done, 1), else_=0)))
        .where(unverified).group_by(acted_in))
    oldest_found = (sa.select(finding.c.description, finding.c.severity, person.c.name, finding.c.created_at)
                    .outerjoin(action, action.c.finding_id == finding.c.id)
                    .outerjoin(person, person.c.id == action.c.owner_id)
                    .where(is_open).order_by(finding.c.created_at, finding.c.id).limit(OLDEST_SHOWN))
    oldest_acted = (sa.select(action.c.description, finding.c.severity, person.c.name, action.c.created_at,
                              action.c.due_at, action.c.status)
                    .join(finding, finding.c.id == action.c.finding_id)
                    .outerjoin(person, person.c.id == action.c.owner_id)
                    .where(unverified).order_by(action.c.created_at, action.c.id).limit(OLDEST_SHOWN))
    settled = sa.select(
        sa.select(sa.func.count()).select_from(finding).where(
            finding.c.status == FindingStatus.closed, finding.c.closed_at >= _moment("start"),
            finding.c.closed_at < _moment("end")).scalar_subquery(),
        sa.select(sa.func.count()).select_from(action).where(
            action.c.status == ActionStatus.verified, action.c.verified_at >= _moment("start"),
            action.c.verified_at < _moment("end")).scalar_subquery())
    return counted, oldest_found, oldest_acted, settled


@task
def findings_section(now: datetime, period: Period, tz: str) -> rules.FindingsSection:
    """Open findings and unverified corrective actions counted by age in SQL, the oldest of each, what closed in
    the period."""
    start, end = period.bounds(tz)
    young, middle, old = rules.age_bucket_starts(now)
    counted, oldest_found, oldest_acted, settled = _findings_statements()
    with unit() as db:
        connection = db.connection()
        ages = {"young": young, "middle": middle, "old": old, "now": now}
        rows = connection.execute(counted, ages).all()
        by_severity = [(index, severity.value, count) for index, severity, count, _, _ in rows if severity]
        by_age = [(index, count, overdue, done) for index, severity, count, overdue, done in rows if not severity]
        items = [rules.OpenItem("finding", description, severity.value, owner or "", rules.age_days(created, now))
                 for description, severity, owner, created in connection.execute(oldest_found)]
        items += [rules.OpenItem("corrective action", description, severity.value, owner or "",
                                 rules.age_days(created, now), due, status in OWED and due < now)
                  for description, severity, owner, created, due, status in connection.execute(oldest_acted)]
        closed, verified = connection.execute(settled, {"start": start, "end": end}).one()
    return rules.FindingsSection(
        ages=rules.counted_ages(by_severity, [(index, count, overdue) for index, count, overdue, _ in by_age]),
        oldest=sorted(items, key=lambda i: (-i.age_days, i.kind))[:OLDEST_SHOWN],
        resolution=rules.Resolution(findings_closed=closed, actions_verified=verified,
                                    awaiting_verification=sum(done for *_, done in by_age)))


# Hours from asking to answer, never below zero, exactly as rules.latency_rows computes them in Python: whole
# microseconds between the two, divided by 10⁶ and by 3,600. SQLite holds a timestamp as text,
# "YYYY-MM-DD HH:MM:SS.ffffff" (its seconds by strftime, its microseconds the last six characters).
_HOURS = {
    "sqlite": "MAX((CAST(strftime('%s', answered_at) AS INTEGER) - CAST(strftime('%s', created_at) AS INTEGER))"
              " * 1000000 + CAST(substr(answered_at, 21, 6) AS INTEGER) - CAST(substr(created_at, 21, 6) AS INTEGER),"
              " 0) / 1000000.0 / 3600.0",
    "postgresql": "GREATEST(CAST(EXTRACT(EPOCH FROM answered_at - created_at) AS DOUBLE PRECISION), 0) / 3600",
}


@cache
def _latency_statement(dialect: str) -> _Statement:
    """rules.latency_rows in SQL, one row per kind and form answered from `start` to before `end` (bound): how
    many, the median and the 90th-percentile hours (nearest rank), how many after their due time."""
    step = table_of(HumanStep)
    answered = (sa.select(step.c.kind, step.c.form, sa.literal_column(_HOURS[dialect], sa.Float).label("hours"),
                          sa.case((step.c.answered_at > step.c.due_at, 1), else_=0).label("late"))
                .where(step.c.status == StepStatus.answered, step.c.answered_at >= _moment("start"),
                       step.c.answered_at < _moment("end"))
                .cte("answered"))
    group = (answered.c.kind, answered.c.form)
    ranked = sa.select(*answered.c, sa.func.row_number().over(partition_by=group, order_by=answered.c.hours)
                       .label("rank"), sa.func.count().over(partition_by=group).label("n")).cte("ranked")
    rank, n, hours = ranked.c.rank, ranked.c.n, ranked.c.hours
    # The median is the middle answer, or the mean of the middle two; the 90th percentile's nearest rank,
    # ceil(0.9 n), is (9 n + 9) div 10 in integers (test_rules holds the two equal).
    middle = sa.or_(rank == (n + 1) // 2, rank == n // 2 + 1)
    return (sa.select(ranked.c.kind, ranked.c.form, sa.func.count(), sa.func.avg(sa.case((middle, hours))),
                      sa.func.max(sa.case((rank == (9 * n + 9) // 10, hours))), sa.func.sum(ranked.c.late))
            .group_by(ranked.c.kind, ranked.c.form))


@task
def latency_section(period: Period, tz: str) -> list[rules.LatencyRow]:
    """Hours from asking to answer for every approval and request answered in the period, per kind and form,
    computed by the database."""
    start, end = period.bounds(tz)
    with unit() as db:
        connection = db.connection()
        found = connection.execute(_latency_statement(connection.dialect.name), {"start": start, "end": end}).all()
    return [rules.LatencyRow(kind=kind, form=form, answered=count, median_hours=median, p90_hours=p90, late=late,
                             title=form_title(form))
            for kind, form, count, median, p90, late in sorted(found)]


@cache
def _vendor_statement() -> _Statement:
    vendor, person, card = table_of(Vendor), table_of(Person), table_of(VendorScorecard)
    newest = (sa.select(card.c.vendor_id, sa.func.max(card.c.period).label("period"))
              .group_by(card.c.vendor_id).subquery("newest"))
    scored = (sa.select(card.c.vendor_id, card.c.period, card.c.score, sa.func.row_number().over(
              partition_by=card.c.vendor_id, order_by=card.c.period.desc()).label("n"))
              .where(card.c.score.is_not(None)).subquery("scored"))
    return (sa.select(vendor.c.code, vendor.c.name, sa.func.coalesce(person.c.name, ""), vendor.c.standing,
                      vendor.c.contract_end, newest.c.period, scored.c.period, scored.c.score)
            .outerjoin(person, person.c.id == vendor.c.owner_id)
            .outerjoin(newest, newest.c.vendor_id == vendor.c.id)
            .outerjoin(scored, sa.and_(scored.c.vendor_id == vendor.c.id, scored.c.n == 1))
            .where(vendor.c.active.is_(True)).order_by(vendor.c.code))


@task
def vendor_section() -> list[rules.VendorLine]:
    """Active vendors, their standing and their latest score (or why there is none), in one query: a vendor has
    one scorecard per review period."""
    with unit() as db:
        found = db.connection().execute(_vendor_statement()).all()
    return [rules.VendorLine(code=code, name=name, owner=owner, standing=standing.value, score=score,
                             scored_period=scored_period or "", contract_end=contract_end,
                             reviewed_period=reviewed or "", note=rules.score_note(reviewed, scored_period))
            for code, name, owner, standing, contract_end, reviewed, scored_period, score in found]


@cache
def _inventory_statements() -> tuple[_Statement, _Statement]:
    item, line, request, vendor = (table_of(InventoryItem), table_of(PurchaseRequestLine), table_of(PurchaseRequest),
                                   table_of(Vendor))
    totals = sa.select(sa.func.count(), sa.func.sum(sa.case((item.c.on_hand == 0, 1), else_=0)),
                       sa.func.sum(item.c.on_hand * item.c.unit_cost))
    on_order = (sa.select(line.c.item_id, sa.func.sum(line.c.quantity).label("quantity"))
                .join(request, request.c.id == line.c.request_id)
                .where(request.c.status.in_(OPEN_REQUEST_STATUSES)).group_by(line.c.item_id).subquery("on_order"))
    open_qty = sa.func.coalesce(on_order.c.quantity, 0)
    covered = sa.case((item.c.on_hand + open_qty > item.c.reorder_point, 1), else_=0)
    # Counted over every low item (a window is computed before the limit), only the first few read.
    short = (sa.select(item.c.sku, item.c.location, item.c.description, vendor.c.code, item.c.on_hand,
                       item.c.reorder_point, open_qty, sa.func.count().over(), sa.func.sum(covered).over())
             .join(vendor, vendor.c.id == item.c.vendor_id).outerjoin(on_order, on_order.c.item_id == item.c.id)
             .where(item.c.on_hand <= item.c.reorder_point)
             .order_by(item.c.on_hand, item.c.reorder_point.desc(), item.c.sku, item.c.location)
             .limit(SHORTAGES_SHOWN))
    return totals, short


@task
def inventory_section() -> tuple[rules.InventoryHealth | None, list[rules.Shortage]]:
    """Stock totals in one aggregate; the items at or below their reorder point, counted and the first shown,
    through its partial index."""
    totals, short = _inventory_statements()
    with unit() as db:
        connection = db.connection()
        count, empty, value = connection.execute(totals).one()
        if not count:
            return None, []
        shown = connection.execute(short).all()
    health = rules.InventoryHealth(
        items=int(count), at_or_below=shown[0][7] if shown else 0, out_of_stock=int(empty or 0),
        covered=int(shown[0][8]) if shown else 0, stock_value=float(value or 0))
    return health, [rules.Shortage(*row[:7]) for row in shown]


@cache
def _owed_statement() -> _Statement:
    action, person = table_of(CorrectiveAction), table_of(Person)
    return (sa.select(action.c.description, sa.func.coalesce(person.c.name, ""), action.c.due_at)
            .outerjoin(person, person.c.id == action.c.owner_id)
            .where(action.c.status.in_(OWED), action.c.due_at < _moment("horizon")))


@task
def obligations_section(now: datetime) -> list[rules.Obligation]:
    """What every process puts on the calendar within the horizon (or overdue), and the corrective actions their
    owners still owe: the actions are the engine's, shared by every process, not any one process's."""
    horizon = now + timedelta(days=rules.OBLIGATION_HORIZON_DAYS)
    with unit() as db:
        declared = [due for _, due in processes.obligations(db, horizon)]
        actions = db.connection().execute(_owed_statement(), {"horizon": horizon}).all()
        owners = names_by_id(db, {d.owner_id for d in declared})
    found = [rules.obligation(d.kind, d.what, owners.get(d.owner_id or 0, ""), d.due_at, now) for d in declared]
    found += [rules.obligation("Corrective action", description, owner, due, now)
              for description, owner, due in actions]
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
