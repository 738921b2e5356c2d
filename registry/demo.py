"""A small demo organisation, seeded once on first start."""

from __future__ import annotations

import csv
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path

from sqlmodel import Session, select

from registry.clock import utcnow
from registry.compliance import Control, Criticality, Framework
from registry.continuity import ContinuityPlan, DrillMeasure, DrillProgram, Facility, RosterEntry, RosterRole
from registry.people import Person, Team
from registry.supply import PurchaseRequest, RequestStatus, Vendor

DEMO_FRAMEWORK = "Information Security"

_PEOPLE = [
    # key, name, email, manager key, team, roles
    ("dora", "Dora Director", "dora.director@demo.example", None, "Operations", ["director", "operations_report"]),
    ("clara", "Clara Compliance", "clara.compliance@demo.example", "dora", "Operations", ["compliance_manager"]),
    ("ivan", "Ivan IT", "ivan.it@demo.example", "dora", "IT", []),
    ("fatima", "Fatima Facilities", "fatima.facilities@demo.example", "dora", "Facilities", []),
    ("hugo", "Hugo HR", "hugo.hr@demo.example", "dora", "People", []),
    ("paula", "Paula Procurement", "paula.procurement@demo.example", "dora", "Operations", ["procurement_manager"]),
    ("ian", "Ian Inventory", "ian.inventory@demo.example", "paula", "Operations", ["inventory_planner"]),
    ("wendy", "Wendy Warden", "wendy.warden@demo.example", "fatima", "Facilities", []),
    ("sam", "Sam Sales", "sam.sales@demo.example", "dora", "Sales", []),
    ("olivia", "Olivia Office", "olivia.office@demo.example", "fatima", "Facilities", []),
    ("will", "Will Warehouse", "will.warehouse@demo.example", "paula", "Operations", []),
    ("lena", "Lena Logistics", "lena.logistics@demo.example", "will", "Operations", []),
]

_FACILITIES = [
    # code, name, address, [(person key, area)], [warden keys]
    ("HQ", "Head office", "1 Harbour Street, London",
     [("dora", "Floor 3"), ("clara", "Floor 3"), ("ivan", "Floor 2"), ("hugo", "Floor 2"), ("paula", "Floor 1"),
      ("sam", "Floor 1"), ("olivia", "Ground floor")], ["fatima", "wendy"]),
    ("WH1", "Warehouse North", "Unit 4, Riverside Estate, Leeds",
     [("ian", "Goods in"), ("lena", "Dispatch")], ["will"]),
]

_PLANS = [
    # code, name, owner key, facility code, RTO, RPO (minutes), review cadence, days since the last review
    ("BCP-EVAC-HQ", "Head office evacuation", "fatima", "HQ", 10, 0, "0 9 1 3,9 *", 80),
    ("BCP-EVAC-WH1", "Warehouse North evacuation", "will", "WH1", 8, 0, "0 9 1 3,9 *", 80),
    ("BCP-IT", "IT outage recovery", "ivan", None, 240, 60, "0 9 1 12 *", 355),
]

_PROGRAMS = [
    # facility code, kind, title, cadence, plan code, window, escalate after (minutes), what recovery means
    ("HQ", "fire_evacuation", "Fire evacuation", "0 10 15 3,9 *", "BCP-EVAC-HQ", 20, 5, DrillMeasure.headcount),
    ("HQ", "it_outage_tabletop", "IT outage tabletop", "0 10 1 6 *", "BCP-IT", 120, 30, DrillMeasure.recovery),
    ("WH1", "fire_evacuation", "Fire evacuation", "0 10 20 4,10 *", "BCP-EVAC-WH1", 20, 5, DrillMeasure.headcount),
]

_CONTROLS = [
    # ref, title, owner key, cadence, criticality
    ("AC-1", "User access review", "ivan", "0 9 1 1,4,7,10 *", Criticality.high),
    ("AC-2", "Leavers' accounts disabled within 24 hours", "hugo", "0 9 1 1,4,7,10 *", Criticality.high),
    ("BK-1", "Backups restored in a test", "ivan", "0 9 1 * *", Criticality.high),
    ("PS-1", "Badge access to server room reviewed", "fatima", "0 9 1 1,4,7,10 *", Criticality.medium),
    ("PS-2", "Fire suppression inspected", "fatima", "0 9 15 11 *", Criticality.medium),
    ("HR-1", "Security awareness training completed", "hugo", "0 9 1 1,4,7,10 *", Criticality.low),
    ("VN-1", "Critical vendors' SOC 2 reports on file", "clara", "0 9 1 3 *", Criticality.medium),
]


def seed(db: Session) -> bool:
    """Create whatever part of the demo organisation is missing; True when something was created."""
    created = False
    teams = {t.name: t for t in db.exec(select(Team))}
    people = {p.email: p for p in db.exec(select(Person))}
    by_key: dict[str, Person] = {}
    for key, name, email, manager, team_name, roles in _PEOPLE:
        if email in people:
            by_key[key] = people[email]
            continue
        team = teams.get(team_name)
        if team is None:
            team = teams[team_name] = Team(name=team_name)
            db.add(team)
            db.flush()
        person = Person(name=name, email=email, team_id=team.id, roles=roles, timezone="Europe/London",
                        manager_id=by_key[manager].id if manager else None)
        db.add(person)
        db.flush()
        by_key[key] = person
        created = True
    if db.exec(select(Framework).where(Framework.name == DEMO_FRAMEWORK)).first() is None:
        framework = Framework(name=DEMO_FRAMEWORK, description="The demo organisation's ISO 27001-style controls.",
                              compliance_manager_id=by_key["clara"].id)
        db.add(framework)
        db.flush()
        for ref, title, owner, cadence, criticality in _CONTROLS:
            db.add(Control(framework_id=framework.id or 0, ref=ref, title=title, owner_id=by_key[owner].id,
                           cadence=cadence, criticality=criticality, description=f"{title} ({ref})."))
        db.flush()
        created = True
    if db.exec(select(Facility.id).limit(1)).first() is None:
        _seed_continuity(db, by_key)
        created = True
    return created


def _seed_continuity(db: Session, by_key: dict[str, Person]) -> None:
    """Facilities with their rosters and wardens, continuity plans and drill programmes."""
    facilities: dict[str, Facility] = {}
    for code, name, address, occupants, wardens in _FACILITIES:
        facility = facilities[code] = Facility(code=code, name=name, address=address)
        db.add(facility)
        db.flush()
        for key, area in occupants:
            db.add(RosterEntry(facility_id=facility.id or 0, person_id=by_key[key].id or 0, area=area))
        for key in wardens:
            db.add(RosterEntry(facility_id=facility.id or 0, person_id=by_key[key].id or 0, role=RosterRole.warden,
                               area="Assembly point"))
    plans: dict[str, ContinuityPlan] = {}
    for code, name, owner, at, rto, rpo, cadence, days_ago in _PLANS:
        plans[code] = ContinuityPlan(code=code, name=name, owner_id=by_key[owner].id,
                                     facility_id=facilities[at].id if at else None, rto_minutes=rto, rpo_minutes=rpo,
                                     review_cadence=cadence, summary=f"{name}: roles, steps and contacts.",
                                     last_reviewed_at=utcnow() - timedelta(days=days_ago))
        db.add(plans[code])
    db.flush()
    for at, kind, title, cadence, plan, window, escalate, measure in _PROGRAMS:
        db.add(DrillProgram(facility_id=facilities[at].id or 0, kind=kind, title=title, cadence=cadence,
                            plan_id=plans[plan].id, window_minutes=window, escalate_after_minutes=escalate,
                            measure=measure))
    db.flush()


# --- Budget: the demo year, and the purchase requests committed against it -------------------------------------

DEMO_BUDGET_YEAR = 2026  # the year demo/budget_lines.csv and demo/actuals.csv are written for
_DATED = ("month", "booked_on")  # a demo budget CSV's date columns (2026-03, 2026-03-06)
_PURCHASE_REQUESTS = [
    # vendor code, amount, created on (in the demo year): ordered and not invoiced yet, so committed
    # against the vendor's cost centre; the last one is invoiced (demo/actuals.csv books its key). Ordered, not
    # merely approved: the reorder sends an approved request's order, and these were sent long ago.
    ("DATA", "1200.00", "11-12"),
    ("CLEAN", "880.00", "11-16"),
    ("FAST", "2400.00", "11-19"),
    ("BOLT", "640.00", "10-27"),
    ("CLEAN", "907.89", "10-02"),
]


def budget_year(today: date) -> int:
    """The year the demo budget is imported for: the organisation's current one, so a clone run in any year shows
    the same story in its own year."""
    return today.year


def budget_csv_for(source: Path, target: Path, today: date) -> Path:
    """A copy of a demo budget CSV moved from DEMO_BUDGET_YEAR to `today`'s year: every date and reference shifted,
    and the actuals of months after the current one left out (those months stay budget only)."""
    year, this_month = budget_year(today), today.strftime("%Y-%m")
    with source.open(newline="", encoding="utf-8") as file:
        reader = csv.DictReader(file)
        fields = list(reader.fieldnames or [])
        rows = []
        for row in reader:
            for column in _DATED:
                if column in row:
                    row[column] = str(year) + row[column][4:]
            if "booked_on" in row and row["booked_on"][:7] > this_month:
                continue
            if "reference" in row:
                row["reference"] = row["reference"].replace(str(DEMO_BUDGET_YEAR), str(year))
            rows.append(row)
    with target.open("w", newline="", encoding="utf-8") as file:
        writer = csv.DictWriter(file, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    return target


def seed_purchase_requests(db: Session, today: date) -> int:
    """The demo's purchase requests already ordered this year (none dated after `today`), charged to
    their vendor's cost centre and account, raised by the inventory planner; how many were added."""
    year = budget_year(today)
    vendors = {v.code: v for v in db.exec(select(Vendor))}
    planner = db.exec(select(Person).where(Person.email == "ian.inventory@demo.example")).first()
    if planner is None or not vendors:
        return 0
    added = 0
    for code, amount, on in _PURCHASE_REQUESTS:
        created, vendor = date.fromisoformat(f"{year}-{on}"), vendors.get(code)
        if created > today or vendor is None:
            continue
        moment = datetime.combine(created, time(10), tzinfo=UTC)
        db.add(PurchaseRequest(
            key=f"reorder-{code}-{created.isoformat()}", vendor_id=vendor.id or 0, requester_id=planner.id or 0,
            amount=Decimal(amount), status=RequestStatus.ordered, created_at=moment, decided_at=moment,
            ordered_at=moment, cost_centre_id=vendor.cost_centre_id, account=vendor.account))
        added += 1
    db.flush()
    return added
