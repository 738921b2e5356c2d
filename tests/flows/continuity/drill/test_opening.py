"""Opening a drill a part of the roster at a time: the first alerts leave early, and a run that dies half-way is
carried on by the next, asking nobody twice."""

from __future__ import annotations

import time
from typing import Any

import pytest
from sqlmodel import col, select

from flows.continuity.drill import tasks
from flows.continuity.drill.flow import DrillParameters
from registry import AuditEvent, Drill, DrillParticipant, HumanStep, Notification, Occasion, session
from tests.conftest import Mailbox
from tests.flows.continuity.drill.test_flow import _building


def _drill_mail(smtp: Mailbox) -> list[str]:
    return sorted(m.to for m in smtp.messages() if m.subject.startswith("DRILL:"))


def test_a_drill_whose_run_died_half_way_through_its_roster_is_carried_on_asking_nobody_twice(
        smtp: Mailbox, monkeypatch: pytest.MonkeyPatch) -> None:
    org = _building(occupants=5)  # eight on the roster: the manager, five occupants, two wardens
    monkeypatch.setattr(tasks, "_PART", 3)
    asked = tasks.request_many

    def dies_on_the_second_part(db: Any, requests: Any) -> Any:
        if calls.append(len(requests)) or len(calls) == 2:
            raise RuntimeError("the run died half-way")
        return asked(db, requests)

    calls: list[int] = []
    monkeypatch.setattr(tasks, "request_many", dies_on_the_second_part)
    params = DrillParameters(facility=org["facility"], occasion="2026-12-01T10:00:00+00:00")
    with pytest.raises(RuntimeError, match="half-way"):
        tasks.open_drill.fn(params)
    assert len(smtp.wait_for(3)) == 3, "the first part was alerted while the second was being asked"
    with session() as db:
        [drill] = db.exec(select(Drill)).all()
        occasion = db.get(Occasion, drill.occasion_id)
        assert occasion is not None and occasion.phase == tasks.OPENING
        assert len(db.exec(select(DrillParticipant)).all()) == 3

    monkeypatch.setattr(tasks, "request_many", asked)
    opened = tasks.open_drill.fn(params)
    assert opened.drill_id == drill.id and opened.participants == 8
    smtp.wait_for(8)
    assert tasks.open_drill.fn(params).participants == 8  # opened: a third run asks nobody
    time.sleep(0.5)
    alerted = _drill_mail(smtp)
    assert len(alerted) == 8 and len(set(alerted)) == 8, "everyone alerted, once"
    with session() as db:
        assert len(db.exec(select(HumanStep)).all()) == 8 and len(db.exec(select(Notification)).all()) == 8
        assert len({p.person_id for p in db.exec(select(DrillParticipant))}) == 8
        occasion = db.get(Occasion, drill.occasion_id)
        assert occasion is not None and occasion.phase == ""
        [started] = db.exec(select(AuditEvent).where(col(AuditEvent.action) == "drill.started")).all()
        assert started.data["participants"] == 8
