"""A small demo organisation, seeded once on first start."""

from __future__ import annotations

from datetime import timedelta

from sqlmodel import Session, select

from registry.clock import utcnow
from registry.compliance import Control, Criticality, Framework
from registry.continuity import ContinuityPlan, DrillMeasure, DrillProgram, Facility, RosterEntry, RosterRole
from registry.people import Person, Team

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
