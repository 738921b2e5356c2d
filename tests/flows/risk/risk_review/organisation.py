"""A small organisation with a risk register, imported as `ops import` imports it, for the risk review's tests."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

from sqlalchemy import update
from sqlmodel import col, select

from engine import periods, processes
from engine.importer import import_csv
from registry import KpiDefinition, KpiMeasurement, Occasion, Person, session
from registry.clock import utcnow
from registry.kpis import Direction
from registry.risk import Risk
from tests import factories
from tests.conftest import Mailbox
from tests.links import links_in

CATEGORIES = ("code", "name", "appetite", "description")
RISKS = ("code", "title", "category", "owner_email", "cause", "event", "consequence", "matrix",
         "inherent_likelihood", "inherent_impact", "residual_likelihood", "residual_impact", "treatment",
         "treatment_plan", "controls", "kri", "last_reviewed", "active")


@dataclass
class Org:
    director: Person
    olive: Person
    omar: Person
    manager: Person


def organisation(tmp: Path, *, kri: str = "") -> Org:
    """Dana the Director; Olive and Omar own the risks, Mia manages them both.

    - R-1 (Olive, OPS, appetite Medium): inherent 4×4 High, residual 3×3 Medium — within appetite.
    - R-2 (Olive, SEC, appetite Low): inherent 5×5 Critical, residual 4×4 High — above appetite.
    - R-3 (Omar, OPS): inherent 4×5 Critical, residual 3×4 High — above appetite.
    - R-4 (Omar, SEC): inherent 2×2 Low, residual 1×1 Low — within appetite, reviewed yearly: not due.
    """
    with session() as db:
        director = factories.person(db, "Dana Director")
        director.roles = ["director"]
        db.add(director)
        manager = factories.person(db, "Mia Manager", manager=director)
        olive = factories.person(db, "Olive Owner", manager=manager)
        omar = factories.person(db, "Omar Owner", manager=manager)
        if kri:
            db.add(KpiDefinition(code="IRT", name="Incident response time", unit="h", target=4,
                                 direction=Direction.lower_is_better))
        org = Org(director=director, olive=olive, omar=omar, manager=manager)
    factories.csv_file(tmp / "categories.csv", CATEGORIES, [
        ("OPS", "Operations", "Medium", "Keeping the lights on"), ("SEC", "Security", "Low", "Information security")])
    # Last reviewed 200 days ago: the High and Medium risks are due this quarter by their cadence, the Low one not.
    last = (periods.today() - timedelta(days=200)).isoformat()
    rows = [("R-1", "Warehouse flood", "OPS", org.olive.email, "Old roof", "Water in the racks", "Stock lost", "",
             4, 4, 3, 3, "reduce", "Roof repaired", "", "", last, "true"),
            ("R-2", "Ransomware", "SEC", org.olive.email, "Phishing", "Files encrypted", "Days without systems", "",
             5, 5, 4, 4, "reduce", "Backups tested", "", kri, last, "true"),
            ("R-3", "Single carrier", "OPS", org.omar.email, "One haulier", "Carrier fails", "No deliveries", "",
             4, 5, 3, 4, "transfer", "Insurance", "", "", last, "true"),
            ("R-4", "Badge loss", "SEC", org.omar.email, "", "Badge lost", "Door opened", "",
             2, 2, 1, 1, "accept", "", "", "", last, "true")]
    factories.csv_file(tmp / "risks.csv", RISKS, rows)
    processes.discover()  # the risk kinds are registered by the process declaring them, as `ops import` finds them
    for kind, name in (("risk-categories", "categories.csv"), ("risks", "risks.csv")):
        report = import_csv(kind, tmp / name)
        assert not report.problems, report
    return org


def measure(code: str, value: float, on: date | None = None) -> None:
    with session() as db:
        kpi = db.exec(select(KpiDefinition).where(KpiDefinition.code == code)).one()
        db.add(KpiMeasurement(kpi_id=kpi.id or 0, measured_on=on or date.today(), value=value))


def close_window(key: str) -> None:
    """The review's re-score deadline passed: its occasion's, and its opening moved back a month (the deadline of a
    review opened before occasions held one counts from it)."""
    with session() as db:
        db.execute(update(Occasion).where(col(Occasion.key) == key)
                   .values(opened_at=utcnow() - timedelta(days=40), due_at=utcnow() - timedelta(minutes=1)))


def risk(code: str) -> Risk:
    with session() as db:
        return db.exec(select(Risk).where(Risk.code == code)).one()


def mails(smtp: Mailbox, to: str, subject: str, count: int = 1, seconds: float = 60) -> list[str]:
    """The links of the messages to `to` whose subject starts with `subject`, once `count` of them arrived."""
    deadline = time.monotonic() + seconds
    while True:
        found = [m for m in smtp.messages(to=to) if m.subject.startswith(subject)]
        if len(found) >= count or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert len(found) >= count, f"{len(found)} message(s) '{subject}…' to {to}: {[m.subject for m in smtp.messages()]}"
    return [link for m in found for link in links_in(m.html)]
