from __future__ import annotations

import pytest
from sqlmodel import select

from registry import Control, Person, RegistryValidationError, session
from tests import factories


@pytest.mark.parametrize("cadence", ["not a cron", "61 * * * *", "0 7 1 13 *", ""])
def test_invalid_cron_is_refused_naming_field_and_value(any_db: str, cadence: str) -> None:
    with session() as db:
        owner = factories.person(db)
        manager = factories.person(db)
        framework = factories.framework(db, manager=manager, owners=[])
        ids = (owner.id, framework.id)
    with pytest.raises(RegistryValidationError) as refused, session() as db:
        db.add(Control(framework_id=ids[1] or 0, ref="X-1", title="t", owner_id=ids[0], cadence=cadence))
    assert refused.value.field == "cadence" and refused.value.value == cadence
    assert "Control.cadence" in str(refused.value) and repr(cadence) in str(refused.value)
    with session() as db:
        assert db.exec(select(Control)).all() == []


def test_changing_a_cadence_to_an_invalid_one_is_refused(any_db: str) -> None:
    with session() as db:
        owner = factories.person(db)
        framework = factories.framework(db, manager=factories.person(db), owners=[owner])
        control_id = db.exec(select(Control.id).where(Control.framework_id == framework.id)).one()
    with pytest.raises(RegistryValidationError, match="cadence"), session() as db:
        control = db.get(Control, control_id)
        assert control is not None
        control.cadence = "every quarter"
        db.add(control)
    with session() as db:
        control = db.get(Control, control_id)
        assert control is not None and control.cadence == "0 9 1 1,4,7,10 *"


def test_control_without_owner_is_refused(any_db: str) -> None:
    with session() as db:
        framework = factories.framework(db, manager=factories.person(db), owners=[])
        framework_id = framework.id or 0
    with pytest.raises(RegistryValidationError) as refused, session() as db:
        db.add(Control(framework_id=framework_id, ref="NO-OWNER", title="t", cadence="0 9 1 * *"))
    assert refused.value.field == "owner_id" and "NO-OWNER" in str(refused.value)


@pytest.mark.parametrize("url", ["bogus://somewhere", "slack://", "not a url"])
def test_unknown_channel_url_is_refused(any_db: str, url: str) -> None:
    with pytest.raises(RegistryValidationError) as refused, session() as db:
        db.add(Person(name="Pat", email="pat@test.example", channels=[url]))
    assert refused.value.field == "channels"
    with session() as db:
        assert db.exec(select(Person)).all() == []


def test_known_channel_urls_are_accepted(any_db: str) -> None:
    urls = ["mailto://127.0.0.1:25?from=ops%40test.example&to=pat@test.example", "json://127.0.0.1:9/hook",
            "slack://T000/B000/XXXXXXXX"]
    with session() as db:
        db.add(Person(name="Pat", email="pat@test.example", channels=urls))
    with session() as db:
        assert db.exec(select(Person)).one().channels == urls


def test_a_secret_in_a_refused_channel_url_is_not_echoed(registry_db: str) -> None:
    with pytest.raises(RegistryValidationError) as refused, session() as db:
        db.add(Person(name="Pat", email="pat@test.example", channels=["nosuch://user:hunter2@host"]))
    assert "hunter2" not in str(refused.value)
