"""Every form declares the title people read for it, once, on its model."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from engine.forms import form_model, form_names, form_title, register_form


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
