"""Registry rows for tests, with sensible defaults and unique names."""

from __future__ import annotations

import itertools
import re
from datetime import datetime, timedelta

from sqlmodel import Session

from engine import links
from engine.human_steps import ask
from registry import Control, Criticality, Framework, HumanStep, Person
from registry.clock import utcnow

_counter = itertools.count(1)


def person(db: Session, name: str | None = None, *, manager: Person | None = None,
           channels: list[str] | None = None, active: bool = True) -> Person:
    n = next(_counter)
    name = name or f"Person {n}"
    local = re.sub(r"[^a-z0-9]+", ".", name.lower()).strip(".")
    row = Person(name=name, email=f"{local}.{n}@test.example", channels=channels or [],
                 manager_id=manager.id if manager else None, active=active)
    db.add(row)
    db.flush()
    return row


def framework(db: Session, *, manager: Person, owners: list[Person], cadence: str = "0 9 1 1,4,7,10 *",
              criticality: Criticality = Criticality.high) -> Framework:
    """A framework with one quarterly control per owner."""
    row = Framework(name=f"Framework {next(_counter)}", compliance_manager_id=manager.id)
    db.add(row)
    db.flush()
    for index, owner in enumerate(owners, start=1):
        db.add(Control(framework_id=row.id or 0, ref=f"C-{index}", title=f"Control {index}", owner_id=owner.id,
                       cadence=cadence, criticality=criticality))
    db.flush()
    return row


def step(db: Session, asked: Person, *, kind: str = "approval", requested_by: Person | None = None,
         due: datetime | None = None, expires: datetime | None = None, flow_run_id: str | None = None,
         form: str | None = None, title: str = "Approve the test request") -> HumanStep:
    due = due or utcnow() + timedelta(days=2)
    return ask(db, key=f"test-step-{next(_counter)}", person_id=asked.id or 0,
               form=form or ("approval" if kind == "approval" else "attestation"), kind=kind,  # type: ignore[arg-type]
               title=title, subject_type="test", subject_id=1, due_at=due,
               expires_at=expires or due, requested_by_id=requested_by.id if requested_by else None,
               flow_run_id=flow_run_id)


def link(db: Session, for_step: HumanStep, holder: Person | None = None) -> str:
    """A live token for `holder` (default: the person asked) to answer `for_step`."""
    token = links.issue(db, step=for_step, person_id=(holder or db.get(Person, for_step.person_id)).id or 0)  # type: ignore[union-attr]
    db.flush()
    return token
