"""People and teams: who is asked, who approves, where their messages go."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import JSON, Column, String, cast, func
from sqlmodel import Field, Session, SQLModel, col, select


class Team(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(unique=True, index=True)


class Person(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    name: str
    email: str = Field(unique=True, index=True)
    channels: list[str] = Field(
        default_factory=list,
        sa_column=Column(JSON, nullable=False),
        description="Apprise URLs; empty means e-mail through the default mail server.",
    )
    manager_id: int | None = Field(default=None, foreign_key="person.id")
    team_id: int | None = Field(default=None, foreign_key="team.id")
    timezone: str = "UTC"
    active: bool = True
    delegate_id: int | None = Field(default=None, foreign_key="person.id")
    roles: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))


def _holding(db: Session, role: str) -> list[Person]:
    """Everyone holding `role`, active ones first, then by id."""
    # JSON containment differs by database: narrow with LIKE on the JSON text, decide in Python.
    candidates = db.exec(select(Person).where(cast(col(Person.roles), String).like(f'%"{role}"%'))
                         .order_by(col(Person.active).desc(), col(Person.id)))
    return [person for person in candidates if role in person.roles]


def person_with_role(db: Session, role: str) -> Person | None:
    """The person holding `role`, active ones first, then by id (an inactive one's delegate answers for them)."""
    return next(iter(_holding(db, role)), None)


def people_with_role(db: Session, role: str) -> list[Person]:
    """The active people holding `role` (a distribution list), by id."""
    return [person for person in _holding(db, role) if person.active]


def get_person(db: Session, person_id: int) -> Person:
    """A person a row refers to; a missing one is a broken registry, not a user error."""
    found = db.get(Person, person_id)
    assert found is not None, f"person {person_id} is referenced but missing"
    return found


def names_by_id(db: Session, ids: Iterable[int | None]) -> dict[int, str]:
    """Each referenced person's name, in one query (a report names hundreds of owners)."""
    wanted = {i for i in ids if i is not None}
    if not wanted:
        return {}
    return {pid: name for pid, name in db.exec(select(Person.id, Person.name).where(col(Person.id).in_(wanted)))
            if pid is not None}


def ids_by_email(db: Session, emails: Iterable[str]) -> dict[str, int]:
    """Lower-cased e-mail → person id for those of `emails` that are people, in one query."""
    wanted = {email.lower() for email in emails}
    if not wanted:
        return {}
    found = db.exec(select(func.lower(Person.email), Person.id).where(func.lower(Person.email).in_(wanted)))
    return {email: pid for email, pid in found if pid is not None}
