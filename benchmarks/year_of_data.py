"""A year of data of a mid-sized company, in a registry migrated like any other: what registry benchmarks run on.

    .venv/bin/python benchmarks/year_of_data.py [--scale 1.0] [--url sqlite:///path.db | postgresql+psycopg://…]

At scale 1.0: 1,500 people; 1,000,000 human steps (a year of asks: answered, expired, a few thousand pending)
and a link for most; 300,000 outbox rows; the trail to match (a requested and a decided event per step,
chained with the real keyed hash of registry/trail.py, so `ops verify-trail` holds); a framework of 10,000
controls with four closed quarterly audits, their tests, evidence, findings and corrective actions; 400 vendors,
60,000 deliveries, 100,000 inventory items (5% at or below their reorder point), 6,000 purchase requests;
12 facilities with their roster, drill programmes, two drills each and their participants; 30 continuity plans;
40 KPIs measured daily. Every count scales with --scale (0.001 is a smoke run of seconds).

Rows go in with Core `insert()` executemany in big batches, with explicit ids (PostgreSQL's sequences are moved
past them at the end), so the full year takes about a minute on SQLite rather than the half hour ORM objects
would. The pending steps are left as a sweep would leave them (reminded in their window, escalated once past
due), so a sweep over them has nothing to do but look.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent
if str(PROJECT_ROOT) not in sys.path:
    sys.path.insert(0, str(PROJECT_ROOT))

import sqlalchemy as sa  # noqa: E402

from registry import (  # noqa: E402
    AckStatus,
    ActionStatus,
    Audit,
    AuditEvent,
    ContinuityPlan,
    Control,
    ControlTest,
    CorrectiveAction,
    Criticality,
    Delivery,
    DeliveryStatus,
    Direction,
    Drill,
    DrillParticipant,
    DrillProgram,
    DrillStatus,
    Evidence,
    Facility,
    Finding,
    FindingStatus,
    Framework,
    HumanStep,
    InventoryItem,
    KpiDefinition,
    KpiMeasurement,
    Notification,
    Occasion,
    OccasionStatus,
    Person,
    PurchaseRequest,
    PurchaseRequestLine,
    RequestStatus,
    RosterEntry,
    RosterRole,
    Standing,
    StepLink,
    StepStatus,
    Team,
    TestResult,
    Vendor,
    VendorScorecard,
    get_engine,
)
from registry.migrate import upgrade  # noqa: E402
from registry.trail import GENESIS, _digest, trail_key  # noqa: E402

BENCHMARK = False  # a data generator: benchmarks/_table.py runs the benchmarks that import it, not it
FRAMEWORK = "Year of data ISO 27001"
BATCH = 20_000
CADENCES = ("0 9 1 1,4,7,10 *", "0 9 1 * *", "0 9 15 3 *", "0 9 1 1,7 *", "0 9 1 6 *")


@dataclass
class YearOfData:
    """What was generated, and the handles a benchmark needs."""

    url: str
    scale: float
    counts: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    framework: str = FRAMEWORK
    person_ids: list[int] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return sum(self.counts.values())


def _n(full: int, scale: float, least: int = 1) -> int:
    return max(least, round(full * scale))


def _batched(rows: Iterable[dict[str, Any]], size: int = BATCH) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _default(column: sa.Column[Any]) -> Any:
    default = column.default
    if default is None or not hasattr(default, "arg"):
        return None
    return default.arg(None) if callable(default.arg) else default.arg


class _Writer:
    def __init__(self, db: sa.Connection, counts: dict[str, int]) -> None:
        self.db, self.counts = db, counts

    held: list[tuple[Any, list[dict[str, Any]]]] | None = None

    def hold(self) -> None:
        """Keep rows back until `release`: the records that name their steps are made before the steps are."""
        self.held = []

    def release(self) -> None:
        held, self.held = self.held or [], None
        for model, rows in held:
            self.put(model, rows)

    def put(self, model: Any, rows: Iterable[dict[str, Any]]) -> int:
        if self.held is not None:
            self.held.append((model, list(rows)))
            return 0
        table = model.__table__
        dialect = self.db.dialect
        written = 0
        for batch in _batched(rows):
            # Each value goes through its column type's own bind processor (JSON, enums, UTC datetimes: stored
            # exactly as the ORM stores them), then straight to the driver's executemany: SQLAlchemy's
            # per-row parameter building would otherwise cost more than the database does.
            columns = list(batch[0])
            compiled = sa.insert(table).compile(dialect=dialect, column_keys=columns)
            names = list(compiled.positiontup if compiled.positional else compiled.params)
            missing = {n: _default(table.c[n]) for n in names if n not in batch[0]}  # the model's defaults
            if missing:
                batch = [{**missing, **row} for row in batch]
            processors = [table.c[name].type._cached_bind_processor(dialect) for name in names]
            if compiled.positional:
                params: list[Any] = [tuple(p(row[n]) if p else row[n] for n, p in zip(names, processors, strict=True))
                                     for row in batch]
            else:
                params = [{n: p(row[n]) if p else row[n] for n, p in zip(names, processors, strict=True)}
                          for row in batch]
            self.db.exec_driver_sql(str(compiled), params)
            written += len(batch)
        self.counts[table.name] = self.counts.get(table.name, 0) + written
        return written


def build(url: str, scale: float = 1.0, *, seed: int = 20261201, now: datetime | None = None) -> YearOfData:
    """Migrate the (empty) registry at `url` and fill it with a year of data at `scale`."""
    started = time.perf_counter()
    upgrade(url)
    engine = get_engine(url)
    now = (now or datetime.now(UTC)).replace(microsecond=0)
    rnd = random.Random(seed)
    result = YearOfData(url=url, scale=scale)
    with engine.begin() as db:
        out = _Writer(db, result.counts)
        people = _people(out, rnd, _n(1500, scale, 20))
        result.person_ids = people
        steps = _Steps(rnd, now, people)
        out.hold()
        _compliance(out, rnd, now, people, steps, _n(10_000, scale, 10))
        _supply(out, rnd, now, people, steps, scale)
        _continuity(out, rnd, now, people, steps, scale)
        _kpis(out, rnd, now, people, scale)
        steps.fill_to(_n(1_000_000, scale, 200))
        held, out.held = out.held, None
        out.put(HumanStep, steps.rows)
        out.held = held
        out.release()
        _outbox_and_links(out, rnd, now, people, steps, _n(300_000, scale, 100))
        _trail(out, steps)
        if engine.dialect.name == "postgresql":
            for table in result.counts:
                db.exec_driver_sql(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                                   f"(SELECT COALESCE(MAX(id), 1) FROM {table}))")
    with engine.begin() as db:
        db.exec_driver_sql("ANALYZE")  # statistics, as on any database that has been in use for a year
    result.seconds = time.perf_counter() - started
    return result


def _people(out: _Writer, rnd: random.Random, count: int) -> list[int]:
    teams = max(2, count // 50)
    out.put(Team, ({"id": n, "name": f"Team {n}"} for n in range(1, teams + 1)))
    managers = max(1, count // 15)
    rows = []
    for n in range(1, count + 1):
        roles = ["director"] if n == 1 else (["inventory_planner"] if n == 2 else [])
        rows.append({"id": n, "name": f"Person {n}", "email": f"person{n}@year.example", "channels": [],
                     "manager_id": None if n == 1 else rnd.randint(1, min(managers, n - 1)),
                     "team_id": rnd.randint(1, teams), "timezone": "Europe/London", "active": rnd.random() > 0.02,
                     "delegate_id": None, "roles": roles})
    out.put(Person, rows)
    return list(range(1, count + 1))


class _Steps:
    """Every human step of the year, collected from each process, then the generic rest; ids are in time order."""

    def __init__(self, rnd: random.Random, now: datetime, people: list[int]) -> None:
        self.rnd, self.now, self.people = rnd, now, people
        self.rows: list[dict[str, Any]] = []

    def add(self, *, created: datetime, subject_type: str, subject_id: int, person_id: int, form: str = "attestation",
            kind: str = "form", title: str = "", pending: bool = False) -> int:
        rnd = self.rnd
        step_id = len(self.rows) + 1
        due = created + timedelta(days=rnd.randint(2, 10))
        expires = due + timedelta(days=7)
        row: dict[str, Any] = {
            "id": step_id, "key": f"year-{subject_type}-{subject_id}-{step_id}", "kind": kind, "form": form,
            "title": title or f"{subject_type} {subject_id}", "subject_type": subject_type, "subject_id": subject_id,
            "details": {"area": f"Floor {step_id % 5}"}, "person_id": person_id, "requested_by_id": None,
            "flow_run_id": None, "created_at": created, "due_at": due, "expires_at": expires,
            "status": StepStatus.answered, "answer": None, "answered_by_id": None, "answered_at": None,
            "answer_ip": None, "answer_user_agent": None, "escalation_level": 0, "escalate_to": [],
            "reminded_at": None, "resume_pending": False,
        }
        if pending:
            # As the minute sweep leaves them: reminded once their window opened, escalated once past due.
            row["status"] = StepStatus.pending
            row["expires_at"] = max(expires, self.now + timedelta(hours=rnd.randint(1, 240)))
            if due - timedelta(hours=24) <= self.now:
                row["reminded_at"] = max(created, due - timedelta(hours=24))
            if due <= self.now:
                row["escalation_level"] = 1
        elif rnd.random() < 0.12 and expires < self.now:
            row["status"] = StepStatus.expired
        else:
            answered = created + timedelta(seconds=rnd.randint(60, int((due - created).total_seconds())))
            row.update(answer={"result": "pass"} if form == "attestation" else {"decision": "approve"},
                       answered_by_id=person_id, answered_at=min(answered, self.now),
                       answer_ip="10.0.0.1", answer_user_agent="Mozilla/5.0")
        self.rows.append(row)
        return step_id

    def fill_to(self, total: int) -> None:
        """The rest of the year's asks, spread over it; a few thousand per million still pending."""
        rnd, start = self.rnd, self.now - timedelta(days=365)
        extra = total - len(self.rows)
        times = sorted(start + timedelta(seconds=rnd.randint(0, 365 * 86400)) for _ in range(max(0, extra)))
        for created in times:
            recent = (self.now - created) < timedelta(days=10)
            self.add(created=created, subject_type="request", subject_id=rnd.randint(1, 10**6),
                     person_id=rnd.choice(self.people), form=rnd.choice(("attestation", "approval")),
                     kind="form", pending=recent and rnd.random() < 0.12)


_DRILL_OCCASIONS = 100  # drills' occasions are numbered after the audits' (four)


def _compliance(out: _Writer, rnd: random.Random, now: datetime, people: list[int], steps: _Steps,
                controls: int) -> None:
    out.put(Framework, [{"id": 1, "name": FRAMEWORK, "description": "A year of data.", "compliance_manager_id": 1}])
    out.put(Control, ({"id": n, "framework_id": 1, "ref": f"C-{n:05d}", "title": f"Control {n}",
                       "description": f"Control {n} of the year of data.", "owner_id": rnd.choice(people),
                       "cadence": CADENCES[n % len(CADENCES)], "criticality": rnd.choice(list(Criticality)),
                       "last_tested_at": None, "next_due_at": None, "active": n % 50 != 0}
                      for n in range(1, controls + 1)))
    occasions, audits, tests, evidence, findings, actions = [], [], [], [], [], []
    for quarter in range(4):
        opened = now - timedelta(days=365 - quarter * 91)
        audit_id = quarter + 1
        occasions.append({"id": audit_id, "process": "compliance-audit", "key": f"{FRAMEWORK} past-Q{quarter + 1}",
                          "title": f"{FRAMEWORK} past-Q{quarter + 1}", "period_start": opened,
                          "period_end": opened + timedelta(days=91), "status": OccasionStatus.closed,
                          "phase": "closed", "opened_at": opened, "closed_at": opened + timedelta(days=20),
                          "signoff_round": 1})
        audits.append({"id": audit_id, "framework_id": 1, "period": f"past-Q{quarter + 1}",
                       "evidence_due_at": opened + timedelta(days=10), "occasion_id": audit_id})
        for control in range(1, controls + 1):
            test_id = len(tests) + 1
            owner = rnd.choice(people)
            step = steps.add(created=opened, subject_type="control_test", subject_id=test_id, person_id=owner)
            failed = rnd.random() < 0.02
            tests.append({"id": test_id, "audit_id": audit_id, "control_id": control, "owner_id": owner,
                          "step_id": step, "result": TestResult.failed if failed else TestResult.passed,
                          "note": "", "tested_at": opened + timedelta(days=5)})
            evidence.append({"id": test_id, "control_test_id": test_id, "url": f"https://dms.example/{test_id}",
                             "filename": None, "sha256": None, "size": None, "stored_path": None,
                             "submitted_by_id": owner, "submitted_at": opened + timedelta(days=5)})
            if failed:
                finding_id = len(findings) + 1
                findings.append({"id": finding_id, "origin_type": "control_test", "origin_id": test_id,
                                 "code": "control", "occasion_id": audit_id, "process": "compliance-audit",
                                 "severity": Criticality.medium, "description": f"Control {control} failed",
                                 "status": FindingStatus.closed, "verifier_id": 1,
                                 "created_at": opened + timedelta(days=11), "closed_at": opened + timedelta(days=35)})
                actions.append({"id": finding_id, "finding_id": finding_id, "owner_id": owner,
                                "description": "Fix it", "due_at": opened + timedelta(days=40),
                                "status": ActionStatus.verified, "done_note": "Fixed",
                                "done_at": opened + timedelta(days=30), "verified_by_id": 1,
                                "verified_at": opened + timedelta(days=35), "created_at": opened + timedelta(days=11)})
    out.put(Occasion, occasions)
    out.put(Audit, audits)
    out.put(ControlTest, tests)
    out.put(Evidence, evidence)
    out.put(Finding, findings)
    out.put(CorrectiveAction, actions)


def _supply(out: _Writer, rnd: random.Random, now: datetime, people: list[int], steps: _Steps,
            scale: float) -> None:
    vendors = _n(400, scale, 5)
    out.put(Vendor, ({"id": n, "code": f"V{n:05d}", "name": f"Vendor {n}", "owner_id": rnd.choice(people),
                      "contact_id": rnd.choice(people), "standing": Standing.approved,
                      "review_cadence": "0 7 1 1,4,7,10 *", "last_reviewed_at": None, "next_review_at": None,
                      "contract_end": (now + timedelta(days=rnd.randint(-30, 700))).date(), "active": True}
                     for n in range(1, vendors + 1)))
    today = now.date()
    deliveries = []
    for n in range(1, _n(60_000, scale, 20) + 1):
        promised = today - timedelta(days=rnd.randint(1, 365))
        ordered = rnd.randint(1, 500)
        deliveries.append({"id": n, "po_number": f"PO-{n // 4:07d}", "line": n % 4,
                           "vendor_id": rnd.randint(1, vendors),
                           "sku": f"SKU-{rnd.randint(0, 99_999):07d}", "promised_date": promised,
                           "delivered_date": promised + timedelta(days=rnd.randint(-3, 6)), "qty_ordered": ordered,
                           "qty_received": ordered - rnd.randint(0, 3), "qty_rejected": rnd.randint(0, 2),
                           "unit_price": Decimal(rnd.randint(100, 9999)) / 100, "contracted_price": Decimal("50.00")})
    out.put(Delivery, deliveries)
    out.put(VendorScorecard, ({"id": v * 4 + q + 1, "vendor_id": v + 1, "period": f"past-Q{q + 1}", "deliveries": 30,
                               "on_time_rate": 0.9, "fill_rate": 0.98, "defect_rate": 0.01, "price_variance": 0.02,
                               "score": 0.9, "standing_before": Standing.approved,
                               "standing_proposed": Standing.approved, "step_id": None, "applied_at": None,
                               "created_at": now - timedelta(days=365 - q * 91)}
                              for v in range(vendors) for q in range(4)))
    items = _n(100_000, scale, 20)
    item_rows = []
    for n in range(1, items + 1):
        point = rnd.randint(5, 200)
        low = rnd.random() < 0.05
        item_rows.append({"id": n, "sku": f"SKU-{n:07d}", "location": ("MAIN", "LEEDS", "BRISTOL")[n % 3],
                          "description": f"Item {n}",
                          "on_hand": rnd.randint(0, point) if low else rnd.randint(point + 1, point * 6),
                          "reorder_point": point, "reorder_qty": rnd.randint(10, 400), "lead_time_days": 7,
                          "unit_cost": Decimal(rnd.randint(50, 250_000)) / 100, "vendor_id": rnd.randint(1, vendors)})
    out.put(InventoryItem, item_rows)
    requests, lines = [], []
    statuses = list(RequestStatus)
    for n in range(1, _n(6_000, scale, 5) + 1):
        created = now - timedelta(days=rnd.randint(0, 365))
        status = RequestStatus.received if created < now - timedelta(days=30) else rnd.choice(statuses)
        step = steps.add(created=created, subject_type="purchase_request", subject_id=n, person_id=rnd.choice(people),
                         form="approval", kind="approval")
        requests.append({"id": n, "key": f"year-{n}", "vendor_id": rnd.randint(1, vendors), "requester_id": 2,
                         "amount": Decimal(rnd.randint(100, 50_000)), "status": status, "approvers": [1],
                         "approved_levels": 1, "current_step_id": step, "decision_note": "", "created_at": created,
                         "decided_at": None, "ordered_at": None})
        for item in rnd.sample(range(1, items + 1), min(3, items)):
            lines.append({"id": len(lines) + 1, "request_id": n, "item_id": item, "quantity": rnd.randint(1, 100),
                          "unit_cost": Decimal(1)})
    out.put(PurchaseRequest, requests)
    out.put(PurchaseRequestLine, lines)


def _continuity(out: _Writer, rnd: random.Random, now: datetime, people: list[int], steps: _Steps,
                scale: float) -> None:
    facilities = _n(12, scale, 2)
    out.put(Facility, ({"id": n, "code": f"F{n:02d}", "name": f"Site {n}", "address": "", "active": True}
                       for n in range(1, facilities + 1)))
    roster = [{"id": p, "facility_id": p % facilities + 1, "person_id": p,
               "role": RosterRole.warden if p % 25 == 0 else RosterRole.occupant, "area": f"Floor {p % 5}"}
              for p in people]
    out.put(RosterEntry, roster)
    plans = _n(30, scale, 2)
    out.put(ContinuityPlan, ({"id": n, "code": f"BCP-{n:03d}", "name": f"Plan {n}", "owner_id": rnd.choice(people),
                              "facility_id": n % facilities + 1, "rto_minutes": 240, "rpo_minutes": 60,
                              "review_cadence": "0 9 1 1 *", "version": 1, "summary": "", "last_reviewed_at": None,
                              "last_tested_at": None, "active": True} for n in range(1, plans + 1)))
    programs = [{"id": f * 2 + k + 1, "facility_id": f + 1, "kind": kind, "title": f"{kind} at site {f + 1}",
                 "cadence": "0 10 1 3,9 *", "plan_id": None, "window_minutes": 20, "escalate_after_minutes": 5,
                 "last_run_at": None, "active": True}
                for f in range(facilities) for k, kind in enumerate(("fire_evacuation", "it_outage"))]
    out.put(DrillProgram, programs)
    occasions, drills, participants = [], [], []
    for program in programs:
        for occasion in range(2):
            drill_id = len(drills) + 1
            started = now - timedelta(days=300 - occasion * 180)
            members = [r for r in roster if r["facility_id"] == program["facility_id"]]
            drills.append({"id": drill_id, "key": f"year-drill-{drill_id}", "program_id": program["id"],
                           "facility_id": program["facility_id"], "plan_id": None, "kind": program["kind"],
                           "title": program["title"], "scheduled_for": started, "recovery_step_id": None,
                           "status": DrillStatus.closed, "started_at": started,
                           "escalate_at": started + timedelta(minutes=5), "closes_at": started + timedelta(minutes=20),
                           "closed_at": started + timedelta(minutes=20), "accounted": len(members),
                           "total": len(members), "median_seconds": 60.0, "p90_seconds": 200.0,
                           "recovery_minutes": 12.0, "data_loss_minutes": None, "report_path": None,
                           "report_sha256": None, "flow_run_id": None, "occasion_id": _DRILL_OCCASIONS + drill_id})
            occasions.append({"id": _DRILL_OCCASIONS + drill_id, "process": "emergency-drill",
                              "key": f"year-drill-{drill_id}", "title": program["title"], "period_start": started,
                              "period_end": started + timedelta(minutes=20), "status": OccasionStatus.closed,
                              "phase": "closed", "opened_at": started, "closed_at": started + timedelta(minutes=20)})
            for member in members:
                step = steps.add(created=started, subject_type="drill_participant", subject_id=len(participants) + 1,
                                 person_id=member["person_id"], form="attestation")
                participants.append({"id": len(participants) + 1, "drill_id": drill_id,
                                     "person_id": member["person_id"], "role": member["role"], "area": member["area"],
                                     "step_id": step, "status": AckStatus.accounted, "location": "assembly point",
                                     "acknowledged_at": started + timedelta(seconds=90), "seconds_to_account": 90.0,
                                     "answered_by_id": member["person_id"], "escalated_at": None,
                                     "assistance_alerted_at": None})
    out.put(Occasion, occasions)
    out.put(Drill, drills)
    out.put(DrillParticipant, participants)


def _kpis(out: _Writer, rnd: random.Random, now: datetime, people: list[int], scale: float) -> None:
    kpis = _n(40, scale, 3)
    out.put(KpiDefinition, ({"id": n, "code": f"KPI-{n:02d}", "name": f"Indicator {n}", "unit": "%", "target": 95.0,
                             "direction": Direction.higher_is_better if n % 2 else Direction.lower_is_better,
                             "owner_id": rnd.choice(people), "description": "", "active": True}
                            for n in range(1, kpis + 1)))
    today = now.date()
    out.put(KpiMeasurement, ({"id": k * 365 + d + 1, "kpi_id": k + 1, "measured_on": today - timedelta(days=d),
                              "value": round(rnd.uniform(80, 100), 2), "note": "", "recorded_at": now}
                             for k in range(kpis) for d in range(365)))


def _outbox_and_links(out: _Writer, rnd: random.Random, now: datetime, people: list[int], steps: _Steps,
                      count: int) -> None:
    """The year's messages: most ask for a step (and hold that step's link), all sent but a few given up."""
    body = "Hello,\n\nplease answer the request below before its due date.\n\n" + "Details. " * 25
    html = f"<html><body><p>{body}</p><p><a href=\"[link]\">Answer</a></p></body></html>"

    def messages() -> Iterator[dict[str, Any]]:
        for n in range(1, count + 1):
            step = steps.rows[rnd.randrange(len(steps.rows))]
            created = step["created_at"]
            failed = rnd.random() < 0.001
            key = f"step-{step['id']}-request-{n}"
            yield {"id": n, "idempotency_key": f"{key}#0", "message_key": key, "recipient_id": step["person_id"],
                   "channel": 0, "template": "step_request", "context": {"step": {"id": step["id"]}},
                   "subject": f"Please answer: {step['title']}", "body_text": body, "body_html": html,
                   "attachments": [], "status": DeliveryStatus.failed if failed else DeliveryStatus.sent,
                   "attempts": 1, "next_attempt_at": created, "last_error": "refused" if failed else None,
                   "created_at": created, "sent_at": None if failed else created + timedelta(seconds=2),
                   "give_up_at": created + timedelta(days=1) if failed else None,
                   "alerted_at": created + timedelta(days=1) if failed else None}

    out.put(Notification, messages())
    links = int(count * 0.85)

    def step_links() -> Iterator[dict[str, Any]]:
        for n in range(1, links + 1):
            step = steps.rows[rnd.randrange(len(steps.rows))]
            yield {"id": n, "step_id": step["id"], "person_id": step["person_id"],
                   "token_hash": hashlib.sha256(f"year-token-{n}".encode()).hexdigest(),
                   "created_at": step["created_at"], "expires_at": step["expires_at"]}

    out.put(StepLink, step_links())


def _trail(out: _Writer, steps: _Steps) -> None:
    """A requested event per step and a decided event per decided step, in time order, chained with the real
    keyed hash: the year's trail verifies like any other."""
    key = trail_key()
    events: list[tuple[datetime, str, str, int, dict[str, Any]]] = []
    for row in steps.rows:
        events.append((row["created_at"], "system", "step.requested", row["id"], {"key": row["key"]}))
        if row["status"] == StepStatus.answered:
            events.append((row["answered_at"], f"person{row['person_id']}@year.example", "step.answered",
                           row["id"], {"answer": row["answer"]}))
        elif row["status"] == StepStatus.expired:
            events.append((row["expires_at"], "sweep", "step.expired", row["id"], {"escalation_level": 0}))
    events.sort(key=lambda e: e[0])

    def chained() -> Iterator[dict[str, Any]]:
        prev = GENESIS
        for n, (at, actor, action, entity_id, data) in enumerate(events, start=1):
            digest = _digest(key, prev, at, actor, action, "human_step", entity_id, data)
            yield {"id": n, "at": at, "actor": actor, "action": action, "entity_type": "human_step",
                   "entity_id": entity_id, "data": data, "prev_hash": prev, "hash": digest}
            prev = digest

    out.put(AuditEvent, chained())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=1.0, help="1.0 a full year (default), 0.001 a smoke run")
    parser.add_argument("--url", help="registry URL (default: a new SQLite file .ops-data/year-of-data.db)")
    args = parser.parse_args()
    url = args.url
    if url is None:
        path = Path(".ops-data/year-of-data.db").resolve()
        path.parent.mkdir(parents=True, exist_ok=True)
        for stale in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            stale.unlink(missing_ok=True)
        url = f"sqlite:///{path}"
    built = build(url, args.scale)
    print(f"year of data at scale {args.scale} in {url}: {built.rows:,} rows in {built.seconds:.1f} s "
          f"({built.rows / built.seconds:,.0f} rows/s)")
    for table, count in sorted(built.counts.items()):
        print(f"  {table:24} {count:>10,}")


if __name__ == "__main__":
    main()
