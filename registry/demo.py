"""A small demo organisation, seeded once on first start."""

from __future__ import annotations

from sqlmodel import Session, select

from registry.compliance import Control, Criticality, Framework
from registry.people import Person, Team

DEMO_FRAMEWORK = "Information Security"

_PEOPLE = [
    # key, name, email, manager key, team, roles
    ("dora", "Dora Director", "dora.director@demo.example", None, "Operations", ["director"]),
    ("clara", "Clara Compliance", "clara.compliance@demo.example", "dora", "Operations", ["compliance_manager"]),
    ("ivan", "Ivan IT", "ivan.it@demo.example", "dora", "IT", []),
    ("fatima", "Fatima Facilities", "fatima.facilities@demo.example", "dora", "Facilities", []),
    ("hugo", "Hugo HR", "hugo.hr@demo.example", "dora", "People", []),
    ("paula", "Paula Procurement", "paula.procurement@demo.example", "dora", "Operations", ["procurement_manager"]),
    ("ian", "Ian Inventory", "ian.inventory@demo.example", "paula", "Operations", ["inventory_planner"]),
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
    return created
