"""Every form declares the title people read for it, once, on its model; checks of the moment of answering run
as a person answers at the gateway, never when the answer is read back."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, model_validator
from sqlmodel import select

from engine import forms, links, periods
from engine.answers import answer_of
from engine.forms import answering, form_model, form_names, form_title, register_form
from engine.human_steps import ask
from registry import HumanStep, Person, StepStatus, session
from registry.clock import utcnow
from tests import factories
from tests.conftest import Gateway
from tests.links import answer_link


def test_every_registered_form_is_titled_for_people_not_by_its_registry_name() -> None:
    titles = {name: form_title(name) for name in form_names()}
    assert {"drill_ack", "attestation", "approval"} <= set(titles)
    for name, title in titles.items():
        assert title == form_model(name).model_config.get("title"), name
        assert "_" not in title and title != name and title[:1].isupper(), (name, title)
    assert (titles["drill_ack"], titles["attestation"]) == ("Drill headcount answer", "Control attestation")


def test_a_form_without_a_title_is_refused_when_it_registers() -> None:
    class Untitled(BaseModel):
        answer: str = ""

    with pytest.raises(ValueError, match="form 'untitled_test' .*declares no title"):
        register_form("untitled_test")(Untitled)


def test_a_form_no_longer_registered_keeps_its_name() -> None:
    assert form_title("retired_form") == "retired_form"


class Visit(BaseModel):
    """A test form with checks of the moment of answering: a day not yet past, within the step's limit, and a
    host who is in the registry."""

    model_config = ConfigDict(title="Site visit")

    visit_on: date = Field(title="Visit on", json_schema_extra={"widget": "date"})
    host: str = Field(title="Host (e-mail)")

    @model_validator(mode="after")
    def _bookable(self, info: ValidationInfo) -> Visit:
        given = answering(info)
        if given is None:  # read back, or built in code: what was checked as it was given stands
            return self
        if self.visit_on < given.today:
            raise ValueError(f"Visit on: {self.visit_on} has passed.")
        if self.visit_on > given.today + timedelta(days=int(given.details["_within_days"])):
            raise ValueError("Visit on: too far ahead.")
        if given.db.exec(select(Person).where(Person.email == self.host)).first() is None:
            raise ValueError(f"Host: nobody has the address {self.host}.")
        return self


@pytest.fixture
def visit_step(registry_db: str, monkeypatch: pytest.MonkeyPatch) -> tuple[int, str, str]:
    """A step asking for a Visit (registered for this test only): its id, its link's token, the host's address."""
    monkeypatch.setitem(forms._FORMS, "test_visit", Visit)
    with session() as db:
        person = factories.person(db, "Vic Visitor")
        step = ask(db, key=f"visit-{person.id}", person_id=person.id or 0, form="test_visit", title="Book the visit",
                   subject_type="test", subject_id=1, due_at=utcnow() + timedelta(days=2),
                   details={"_within_days": 30})
        return step.id or 0, links.issue(db, step=step, person_id=person.id or 0), person.email


def test_a_check_of_the_moment_of_answering_refuses_an_answer_at_the_gateway(
        visit_step: tuple[int, str, str], gateway: Gateway) -> None:
    step_id, token, host = visit_step
    link = f"{gateway.url}/s/{token}"
    yesterday = periods.today() - timedelta(days=1)
    for fields, said in (({"visit_on": yesterday.isoformat(), "host": host}, "has passed"),
                         ({"visit_on": (yesterday + timedelta(days=60)).isoformat(), "host": host}, "too far ahead"),
                         ({"visit_on": periods.today().isoformat(), "host": "nobody@example.org"},
                          "nobody has the address nobody@example.org")):
        refused = answer_link(gateway.client, link, fields)
        assert refused.status_code == 422 and said in refused.text, (fields, refused.text[-400:])
    with session() as db:
        step = db.get(HumanStep, step_id)
        assert step is not None and step.status == StepStatus.pending, "a refused answer records nothing"


def test_an_answer_read_back_after_its_day_has_passed_still_reads_as_given(
        visit_step: tuple[int, str, str], gateway: Gateway, monkeypatch: pytest.MonkeyPatch) -> None:
    step_id, token, host = visit_step
    month_ago = utcnow() - timedelta(days=31)
    monkeypatch.setattr("engine.gateway.utcnow", lambda: month_ago)  # answered a month ago...
    booked = periods.today(month_ago) + timedelta(days=10)  # ...for a day three weeks ago
    assert answer_link(gateway.client, f"{gateway.url}/s/{token}",
                       {"visit_on": booked.isoformat(), "host": host}).status_code == 200
    with session() as db:
        step = db.get(HumanStep, step_id)
        assert step is not None and step.status == StepStatus.answered
        read = answer_of(step, Visit)
    assert read == Visit(visit_on=booked, host=host), "read back without the answering checks"
    assert booked < periods.today()
